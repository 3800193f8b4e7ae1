"""Numbers of the peer benchmark: round times from round-end stamps, spreads, ratios, agreement."""

from __future__ import annotations

import itertools
import statistics


def round_times(launch: float, round_end: list[float]) -> dict[str, float]:
    """One run's times from its launch and its round-end stamps (``round_end[0]``: the end of
    the evaluation before round 1, ``round_end[r]``: the end of round ``r``'s evaluation).

    ``startup_s``: launch to the end of the first evaluation (imports, model, data, round 0).
    ``warm_round_s``: median duration of rounds 2.. (round 1 still warms up caches).
    ``round_with_startup_s``: launch to the last round's end, per round.
    """
    rounds = len(round_end) - 1
    if rounds < 2:
        raise ValueError(f"A run needs >= 2 rounds to time a warm one; it has {rounds}.")
    durations = [b - a for a, b in itertools.pairwise(round_end)]
    return {
        "startup_s": round_end[0] - launch,
        "first_round_s": durations[0],
        "warm_round_s": statistics.median(durations[1:]),
        "round_with_startup_s": (round_end[-1] - launch) / rounds,
    }


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(runs: dict[str, list[dict]], baseline: str = "bare") -> dict:
    """Per variant: the spread of each measure over repetitions; per non-baseline variant: the
    spread of its ratio to the baseline in the same repetition (paired)."""
    measures = ("warm_round_s", "round_with_startup_s", "startup_s", "peak_pss_mb")
    summary: dict = {"variants": {}, "ratios": {}}
    for name, variant_runs in runs.items():
        summary["variants"][name] = {m: spread([r[m] for r in variant_runs]) for m in measures}
    for name, variant_runs in runs.items():
        if name == baseline:
            continue
        pairs = list(zip(variant_runs, runs[baseline], strict=True))
        summary["ratios"][name] = {m: spread([v[m] / b[m] for v, b in pairs]) for m in measures}
    return summary


def max_relative_gap(curve: list[float], reference: list[float]) -> float:
    """Largest ``|curve - reference| / reference`` over the rounds (curves of equal length)."""
    if len(curve) != len(reference):
        raise ValueError(f"Curves of {len(curve)} and {len(reference)} points cannot be compared.")
    return max(abs(c - r) / abs(r) for c, r in zip(curve, reference, strict=True))


def check_targets(summary: dict, targets: dict[str, float], rival: str = "flower") -> list[dict]:
    """Each target against the median paired ratio: lit/bare <= target, and lit < rival."""
    rows = []
    for measure, target in targets.items():
        lit = summary["ratios"]["lit"][measure]["median"]
        rows.append(
            {"target": f"{measure} lit/bare <= {target}", "ratio": lit, "met": lit <= target}
        )
        if rival in summary["ratios"]:
            other = summary["ratios"][rival][measure]["median"]
            rows.append(
                {"target": f"{measure} lit < {rival}", "ratio": lit / other, "met": lit < other}
            )
    return rows
