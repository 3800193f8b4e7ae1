"""Figures overlaying several runs: quality per round and per uplink bit or airtime, aggregation
error, ranks, privacy, memory and traffic (matplotlib ``Figure`` objects, no pyplot state)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from lit_airlora.report.runs import Run

#: Quality metrics in order of preference, with whether higher is better.
QUALITY_TAGS = {
    "val/accuracy": True,
    "val/f1_macro": True,
    "val/perplexity": False,
    "val/loss": False,
}
#: Families of tags drawn one panel per tag when any run logged them.
FAMILIES = {
    "memory": "memory/",
    "traffic": "split/",
}


def quality_tags(runs: Sequence[Run]) -> list[str]:
    """Quality metrics logged by at least one run (accuracy/F1 before perplexity/loss)."""
    return [tag for tag in QUALITY_TAGS if any(r.has(tag) for r in runs)]


def cumulative(run: Run, tag: str) -> dict[int, float]:
    """Round -> running total of a per-round tag, with 0 at round 0."""
    total, out = 0.0, {0: 0.0}
    for round_idx, value in run.series.get(tag, []):
        total += value
        out[round_idx] = total
    return out


def per_round_figure(runs: Sequence[Run], tags: Sequence[str], log_y: Sequence[str] = ()):
    """One panel per tag, value against round, one line per run."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 2.6 * len(tags)))
    axes_list = figure.subplots(len(tags), 1, sharex=True, squeeze=False)[:, 0]
    for axes, tag in zip(axes_list, tags, strict=True):
        for run, marker in zip(runs, itertools.cycle("os^vDx+")):
            if run.has(tag):
                values = run.values(tag)
                if tag in log_y:  # a log axis drops zeros (an ideal channel's NMSE): keep them
                    values = [max(v, 1e-12) for v in values]
                axes.plot(run.rounds(tag), values, marker=marker, ms=3, label=run.name)
        if tag in log_y:
            axes.set_yscale("log")
        axes.set_ylabel(tag)
        axes.grid(alpha=0.3)
    axes_list[0].legend(fontsize=7)
    axes_list[-1].set_xlabel("round")
    figure.tight_layout()
    return figure


def quality_against_figure(runs: Sequence[Run], quality: str, cost_tag: str, label: str):
    """Quality after each round against the cumulative cost (``cost_tag`` summed over rounds)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 4.0))
    axes = figure.add_subplot()
    for run, marker in zip(runs, itertools.cycle("os^vDx+")):
        if not (run.has(quality) and run.has(cost_tag)):
            continue
        cost = cumulative(run, cost_tag)
        points = [(cost[r], v) for r, v in run.series[quality] if r in cost]
        axes.plot(*zip(*points, strict=True), marker=marker, ms=3, label=run.name)
    axes.set_xlabel(label)
    axes.set_ylabel(quality)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def family_tags(runs: Sequence[Run], prefix: str) -> list[str]:
    """Every tag under ``prefix`` logged by any run, sorted."""
    return sorted({t for r in runs for t in r.series if t.startswith(prefix)})
