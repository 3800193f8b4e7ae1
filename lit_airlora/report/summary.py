"""The Markdown summary: one row per run, the columns the runs logged."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lit_airlora.report.figures import QUALITY_TAGS
from lit_airlora.report.runs import Run

#: Per-round costs summed over the run: tag -> column heading.
TOTALS = {
    "comm/uplink_bits": "uplink bits",
    "comm/airtime_s": "airtime (s)",
    "comm/energy_j": "energy (J)",
}


def _quality(tag: str) -> Callable[[Run], str | None]:
    def cell(run: Run) -> str | None:
        values = run.values(tag)
        if not values:
            return None
        best = max(values) if QUALITY_TAGS[tag] else min(values)
        return f"{values[0]:.4g} -> {values[-1]:.4g} (best {best:.4g})"

    return cell


def _total(tag: str) -> Callable[[Run], str | None]:
    return lambda run: f"{sum(run.values(tag)):.4g}" if run.has(tag) else None


def _mean(tag: str) -> Callable[[Run], str | None]:
    return lambda run: (
        f"{sum(run.values(tag)) / len(run.values(tag)):.3g}" if run.has(tag) else None
    )


def _last(tag: str) -> Callable[[Run], str | None]:
    return lambda run: f"{run.last(tag):.4g}" if run.has(tag) else None


def _peak(prefix: str) -> Callable[[Run], str | None]:
    def cell(run: Run) -> str | None:
        values = [v for t, s in run.series.items() if t.startswith(prefix) for _, v in s]
        return f"{max(values):.4g}" if values else None

    return cell


def columns() -> list[tuple[str, Callable[[Run], str | None]]]:
    """(heading, cell function) of every column a summary may have, in order."""
    rounds = [
        ("rounds", lambda r: str(max((max(r.rounds(t), default=0) for t in r.series), default=0)))
    ]
    quality = [(f"{tag} first -> last", _quality(tag)) for tag in QUALITY_TAGS]
    totals = [(heading, _total(tag)) for tag, heading in TOTALS.items()]
    return [
        *rounds,
        *quality,
        *totals,
        ("mean agg NMSE", _mean("channel/agg_nmse")),
        ("mean rank", _mean("policy/mean_rank")),
        ("privacy epsilon", _last("privacy/epsilon")),
        ("peak memory (max of memory/*)", _peak("memory/")),
    ]


def summary_markdown(runs: Sequence[Run], figures: Sequence[str]) -> str:
    """A Markdown page: the table (columns no run logged are left out) and the figures."""
    table = [(heading, [cell(run) for run in runs]) for heading, cell in columns()]
    table = [(h, cells) for h, cells in table if any(c is not None for c in cells)]
    lines = ["# Run report", "", f"{len(runs)} run(s): " + ", ".join(r.name for r in runs), ""]
    lines.append("| run | " + " | ".join(h for h, _ in table) + " |")
    lines.append("|---" * (len(table) + 1) + "|")
    for i, run in enumerate(runs):
        cells = [cells[i] if cells[i] is not None else "-" for _, cells in table]
        lines.append(f"| {run.name} | " + " | ".join(cells) + " |")
    lines += ["", "Sources: " + ", ".join(f"`{r.path}`" for r in runs), ""]
    lines += [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"
