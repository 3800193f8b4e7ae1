"""Read a run's TensorBoard event files into per-round series (tensorboard's own reader).

Lightning logs round metrics at the global step of the round's last batch, together with an
``epoch`` scalar; a round is an epoch, so ``round = epoch + 1`` counts rounds completed, and
values logged before training with a ``_round0`` suffix (``val/perplexity_round0``) are round 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

EVENT_GLOB = "events.out.tfevents.*"
ROUND0_SUFFIX = "_round0"


@dataclass
class Run:
    """One run's logged series.

    Attributes:
        name: Display name (the logger's name, plus the version when a name has several).
        path: The folder holding the event files.
        series: Tag -> ``[(round, value), ...]`` sorted by round (last value per round wins).
        images: Tag -> PNG bytes of the last image logged under that tag.
    """

    name: str
    path: Path
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)

    def has(self, tag: str) -> bool:
        return bool(self.series.get(tag))

    def values(self, tag: str) -> list[float]:
        return [v for _, v in self.series.get(tag, [])]

    def rounds(self, tag: str) -> list[int]:
        return [r for r, _ in self.series.get(tag, [])]

    def last(self, tag: str) -> float | None:
        values = self.values(tag)
        return values[-1] if values else None


def find_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Folders holding event files at or below ``paths`` (sorted, without duplicates).

    Raises:
        FileNotFoundError: A path does not exist or holds no TensorBoard event file.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"`RUN_DIR` ({raw}) does not exist: pass a run's log folder.")
        folders = sorted({f.parent for f in path.rglob(EVENT_GLOB)})
        if not folders:
            raise FileNotFoundError(
                f"`RUN_DIR` ({raw}) holds no TensorBoard event file ({EVENT_GLOB}): pass the "
                "folder a TensorBoardLogger wrote (e.g. runs/quickstart/version_0)."
            )
        found.extend(f for f in folders if f not in found)
    return found


def load_run(folder: str | Path, name: str | None = None) -> Run:
    """All scalars of ``folder`` by round, and the last image of each image tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = Path(folder)
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 1})
    events.Reload()
    tags = events.Tags()
    epoch_at_step = (
        {e.step: int(e.value) for e in events.Scalars("epoch")}
        if ("epoch" in tags["scalars"])
        else {}
    )
    run = Run(name or default_name(folder), folder)
    for tag in tags["scalars"]:
        if tag in ("epoch", "hp_metric"):
            continue
        points = [(e.step, e.value) for e in events.Scalars(tag)]
        if tag.endswith(ROUND0_SUFFIX):
            base = tag[: -len(ROUND0_SUFFIX)]
            run.series.setdefault(base, []).extend((0, v) for _, v in points[-1:])
        else:
            rounds = [
                (_round_of(step, epoch_at_step, index), v) for index, (step, v) in enumerate(points)
            ]
            run.series.setdefault(tag, []).extend(rounds)
    for tag, points in run.series.items():
        by_round = dict(points)  # in logging order: the last value logged for a round wins
        run.series[tag] = sorted(by_round.items())
    for tag in tags["images"]:
        run.images[tag] = events.Images(tag)[-1].encoded_image_string
    return run


def default_name(folder: Path) -> str:
    """``<logger name>/<version>``, as TensorBoardLogger lays folders out."""
    if folder.name.startswith("version_") and folder.parent.name:
        return f"{folder.parent.name}/{folder.name}"
    return folder.name


def _round_of(step: int, epoch_at_step: dict[int, int], index: int) -> int:
    """Rounds completed when ``step`` was logged: 0 before the first training step, else the
    epoch logged at (or before) that step, plus one; without an ``epoch`` scalar, the value's
    position (one value per round)."""
    if step == 0 and epoch_at_step:
        return 0  # logged before the first training step: the round-0 evaluation
    earlier = [s for s in epoch_at_step if s <= step]
    if not earlier:
        return index + 1
    return epoch_at_step[max(earlier)] + 1
