"""``lit-airlora report RUN_DIR [RUN_DIR ...] [--out DIR]``: PNG figures and ``report.md``."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from lit_airlora.report import figures as fig
from lit_airlora.report.runs import Run, find_run_dirs, load_run
from lit_airlora.report.summary import summary_markdown


def write_report(run_dirs: list[str | Path], out_dir: str | Path) -> Path:
    """Read every run under ``run_dirs``, write figures and ``report.md`` to ``out_dir``.

    Returns the path of ``report.md``.
    """
    runs = [load_run(folder) for folder in find_run_dirs(run_dirs)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [name for name, figure in _figures(runs) if _save(figure, out / name)]
    written += _rank_heatmaps(runs, out)
    report = out / "report.md"
    report.write_text(summary_markdown(runs, written))
    return report


def _figures(runs: list[Run]):
    """(file name, figure) of every figure the runs have data for."""
    quality = fig.quality_tags(runs)
    if quality:
        yield "quality_per_round.png", fig.per_round_figure(runs, quality, log_y=["val/perplexity"])
        for cost_tag, label, name in (
            ("comm/uplink_bits", "cumulative uplink bits", "quality_vs_uplink_bits.png"),
            ("comm/airtime_s", "cumulative airtime (s)", "quality_vs_airtime.png"),
        ):
            if any(r.has(cost_tag) for r in runs):
                yield name, fig.quality_against_figure(runs, quality[0], cost_tag, label)
    for tag, name, log_y in (
        ("channel/agg_nmse", "aggregation_nmse.png", True),
        ("policy/mean_rank", "mean_rank.png", False),
        ("privacy/epsilon", "privacy_epsilon.png", False),
    ):
        if any(r.has(tag) for r in runs):
            yield name, fig.per_round_figure(runs, [tag], log_y=[tag] if log_y else [])
    for family, prefix in fig.FAMILIES.items():
        tags = fig.family_tags(runs, prefix)
        if tags:
            yield f"{family}.png", fig.per_round_figure(runs, tags)


def _save(figure, path: Path) -> bool:
    figure.savefig(path, dpi=120)
    return True


def _rank_heatmaps(runs: list[Run], out: Path) -> list[str]:
    """The last rank heatmap each run logged, as it was logged."""
    names = []
    for run in runs:
        image = run.images.get("policy/rank_heatmap")
        if image:
            name = "ranks_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", run.name) + ".png"
            (out / name).write_bytes(image)
            names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (after ``report``), write the report, print where it is."""
    parser = argparse.ArgumentParser(
        prog="lit-airlora report",
        description="Figures and a Markdown summary from the TensorBoard logs of one or more runs.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run log folders")
    parser.add_argument("--out", default="report", help="output folder (default: ./report)")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.run_dirs, args.out)
    except FileNotFoundError as err:
        print(f"lit-airlora report: error: {err}", file=sys.stderr)
        return 2
    print(f"Report: {report}")  # the command's own output to the user
    return 0
