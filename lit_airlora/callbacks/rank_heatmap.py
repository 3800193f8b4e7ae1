"""Rank history as a heatmap figure (modules x rounds)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: Inches per module row and per round column; the figure grows with the run but stays bounded.
_ROW_IN, _COL_IN, _MAX_IN = 0.12, 0.25, 40.0


def short_module_names(names: Sequence[str]) -> list[str]:
    """Names without their common dotted prefix (``model.layers.0.q_proj`` -> ``0.q_proj``)."""
    if len(names) < 2:
        return [n.rsplit(".", 1)[-1] for n in names]
    parts = [n.split(".") for n in names]
    common = 0
    while all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    return [".".join(p[common:]) for p in parts]


def rank_heatmap_figure(rounds: Sequence[int], ranks: Mapping[str, Sequence[int]], max_rank: int):
    """A matplotlib ``Figure`` of active ranks: one row per module, one column per round.

    Args:
        rounds: Round indices (columns).
        ranks: Module -> rank per round (same length as ``rounds``).
        max_rank: Upper end of the colour scale.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, any backend

    names = list(ranks)
    grid = [list(ranks[n]) for n in names]  # (modules, rounds)
    width = min(_MAX_IN, 3.0 + _COL_IN * len(rounds))
    height = min(_MAX_IN, 1.5 + _ROW_IN * len(names))
    figure = Figure(figsize=(width, height))
    axes = figure.add_subplot()
    image = axes.imshow(grid, aspect="auto", interpolation="nearest", vmin=0, vmax=max_rank)
    axes.set_xlabel("round")
    axes.set_ylabel("module")
    axes.set_xticks(range(len(rounds)), [str(r) for r in rounds], fontsize=6)
    axes.set_yticks(range(len(names)), short_module_names(names), fontsize=5)
    figure.colorbar(image, ax=axes, label="active rank")
    figure.tight_layout()
    return figure
