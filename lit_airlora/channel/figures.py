"""Figures of a channel's history over rounds (SNR and aggregation error), for TensorBoard."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def channel_history_figure(history: Sequence[Mapping]):
    """A matplotlib ``Figure``: SNR (mean, min-max band) and aggregation NMSE per round.

    Args:
        history: Per-round records with ``round``, ``channel/snr_db_mean``, ``channel/snr_db_min``,
            ``channel/snr_db_max`` and ``channel/agg_nmse``.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, any backend

    rounds = [r["round"] for r in history]
    figure = Figure(figsize=(6.0, 5.0))
    snr_axes, nmse_axes = figure.subplots(2, 1, sharex=True)
    snr_axes.fill_between(
        rounds,
        [r["channel/snr_db_min"] for r in history],
        [r["channel/snr_db_max"] for r in history],
        alpha=0.3,
        label="min-max over clients",
    )
    snr_axes.plot(rounds, [r["channel/snr_db_mean"] for r in history], marker="o", label="mean")
    snr_axes.set_ylabel("SNR (dB)")
    snr_axes.legend(fontsize=7)
    nmse = [max(r["channel/agg_nmse"], 1e-12) for r in history]  # log axis: keep zeros visible
    nmse_axes.semilogy(rounds, nmse, marker="o")
    nmse_axes.set_ylabel("aggregation NMSE")
    nmse_axes.set_xlabel("round")
    figure.tight_layout()
    return figure
