"""The SOFT experiment's bits-to-target arithmetic on hand-made curves (closed forms), its
verdict rules (bits at equal quality, TSFA's latency against T_bar), and its refusal of a bad
run plan or of the same run in two merged files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "docs" / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
soft_bits = pytest.importorskip("soft_bits")


def _run(perplexity: list[float], bits_per_round: float) -> dict:
    """A run: perplexity before round 1 then after each round, constant bits per round."""
    rounds = [
        {"comm/uplink_bits_cumulative": bits_per_round * t} for t in range(1, len(perplexity))
    ]
    return {"perplexity": perplexity, "rounds": rounds, "total_bits": bits_per_round * len(rounds)}


FEDAVG = _run([100.0, 80.0, 60.0, 50.0, 40.0], 10.0)  # targets: 80, 60, 50, 40 (rounds 1-4)


def test_targets_and_bits_to_target_follow_the_first_crossing():
    assert [(t, p) for _, t, p in soft_bits.targets(FEDAVG)] == [
        (1, 80.0),
        (2, 60.0),
        (3, 50.0),
        (4, 40.0),
        (4, pytest.approx(40.8)),  # equal quality: within 2% of the best
    ]
    soft = _run([100.0, 70.0, 55.0, 45.0, 41.0], 3.0)
    assert soft_bits.bits_to_target(soft, 60.0) == 6.0  # round 2
    assert soft_bits.bits_to_target(soft, 45.0) == 9.0  # round 3, equality counts
    assert soft_bits.bits_to_target(soft, 40.0) is None  # never reached


def test_targets_of_an_overfitting_fedavg_split_the_rounds_to_its_best():
    # best 50 at round 4 of 8, then the curve rises: fractions of all 8 rounds would give
    # rounds 2, 4, 6, 8 and three equal targets; fractions of the 4 rounds to its best do not
    rising = _run([100.0, 80.0, 60.0, 55.0, 50.0, 70.0, 65.0, 75.0, 90.0], 10.0)
    assert [(t, p) for _, t, p in soft_bits.targets(rising)] == [
        (1, 80.0),
        (2, 60.0),
        (3, 55.0),
        (4, 50.0),
        (4, pytest.approx(51.0)),
    ]
    # a noisy dip before the best keeps the running minimum; equal quality is the first round
    # within 2% of the best (round 2 here), not the round of the best itself
    noisy = _run([100.0, 80.0, 50.5, 52.0, 50.0, 60.0], 10.0)
    assert [(t, p) for _, t, p in soft_bits.targets(noisy)][2:] == [
        (3, 50.5),
        (4, 50.0),
        (2, pytest.approx(51.0)),
    ]
    # the bits-to-target figure's levels stop at FedAvg's best (later ones repeat it)
    assert soft_bits._bits_to_levels(rising, rising) == ([80.0, 60.0, 55.0, 50.0], [10, 20, 30, 40])


def test_savings_are_against_fedavgs_bits_to_the_same_target_of_the_same_seed():
    soft = _run([100.0, 70.0, 55.0, 45.0, 39.0], 3.0)
    saved = soft_bits.savings({soft_bits.FEDAVG: {"0": FEDAVG}, soft_bits.SOFT: {"0": soft}})
    final = saved[soft_bits.SOFT][soft_bits.STRICT][0]
    assert final["round"] == 4 and final["bits"] == 12.0
    assert final["saving"] == pytest.approx(1 - 12.0 / 40.0)  # FedAvg: 40 bits to 40.0
    assert final["saving_late"] == pytest.approx(1 - 15.0 / 40.0)
    assert all(e[0]["saving"] == 0.0 for e in saved[soft_bits.FEDAVG].values())
    equal = saved[soft_bits.SOFT][soft_bits.EQUAL][0]  # <= 40.8: SOFT's 39 at round 4
    assert equal["bits"] == 12.0 and equal["saving"] == pytest.approx(1 - 12.0 / 40.0)


@pytest.mark.parametrize(
    ("savings", "late", "word"),
    [
        ((0.7, 0.72), (0.65, 0.66), "passes"),
        ((0.7, 0.72), (0.55, 0.66), "within the noise"),
        ((0.55, 0.65), (0.5, 0.6), "within the noise"),
        ((0.5, 0.55), (0.45, 0.5), "fails"),
        ((0.7, None), (0.65, None), "did not come within 2%"),
    ],
)
def test_a_saving_passes_only_when_every_seed_clears_60_percent_one_round_later(
    savings, late, word
):
    entries = [
        {"saving": s, "saving_late": s_late} for s, s_late in zip(savings, late, strict=True)
    ]
    assert word in soft_bits._saving_verdict(entries)


def test_bad_run_plan_and_a_run_in_two_merged_files_are_refused(tmp_path):
    for bad in (["soft"], ["sotf:0"], ["soft:-1"]):
        with pytest.raises(ValueError, match=r"--runs: .* is not METHOD:SEED"):
            soft_bits._check_runs(bad)
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path in paths:
        path.write_text(json.dumps({"results": {soft_bits.SOFT: {"0": FEDAVG}}}))
    with pytest.raises(ValueError, match=r"--merge: SOFT .* seed 0 is in two files"):
        soft_bits.merge(paths)


def test_tsfa_priced_at_32_bits_needs_twice_the_bits_to_every_target():
    tsfa = _run([100.0, 70.0, 55.0, 45.0, 39.0], 3.0)
    both = soft_bits.with_tsfa_at_32_bits({soft_bits.TSFA: {"0": tsfa}})
    doubled = both[soft_bits.TSFA_32]["0"]
    for target in (60.0, 45.0, 39.0):
        assert soft_bits.bits_to_target(doubled, target) == 2 * soft_bits.bits_to_target(
            tsfa, target
        )
    assert doubled["total_bits"] == 2 * tsfa["total_bits"] and tsfa["total_bits"] == 12.0


def _tsfa(latency: list[float], queue_end: float) -> dict:
    rounds = [
        {"tsfa/round_latency_s": x, "tsfa/avg_latency_s": sum(latency[: t + 1]) / (t + 1)}
        for t, x in enumerate(latency)
    ]
    rounds[-1]["tsfa/queue"] = queue_end
    return {"rounds": rounds}


@pytest.mark.parametrize(
    ("seeds", "word"),
    [
        ({"0": [0.75, 0.5, 0.25, 0.5], "1": [0.5, 0.5, 0.5, 0.5]}, "met (2/2"),  # at T_bar
        ({"0": [0.75, 0.5, 0.25, 0.5], "1": [0.5, 0.75, 0.5, 0.5]}, "mixed (1/2"),
        ({"0": [1.25, 0.5, 0.5, 0.5]}, "not met (0/1"),  # 0.5 from round 2 on, 0.6875 in all
    ],
)
def test_tsfa_latency_verdict_compares_the_running_average_with_t_bar(seeds, word):
    runs = {seed: _tsfa(latency, 0.0) for seed, latency in seeds.items()}
    text = soft_bits.latency_verdict(runs, budget_s=0.5)
    assert f": {word} seeds)" in text
    first = next(iter(seeds.values()))
    assert f"{sum(first) / 4:.3f}" in text  # the running average after the last round
    assert f"rounds 2 on: {sum(first[1:]) / 3:.3f}" in text


def test_table_reports_wall_times_and_the_latency_line_only_with_a_budget():
    runs = {}
    for name in (soft_bits.FEDAVG, soft_bits.SOFT, soft_bits.TSFA):
        run = _run([100.0, 70.0, 55.0, 45.0, 39.0], 3.0)
        tsfa = _tsfa([0.6, 0.4, 0.5, 0.5], 0.1)["rounds"]
        run["rounds"] = [{**r, **t} for r, t in zip(run["rounds"], tsfa, strict=True)]
        runs[name] = {"0": {**run, "wall_s": 90.0}}
    assert "| 1.5 |" in soft_bits.table(runs)  # 90 s of wall time, in minutes
    assert "T_bar" not in soft_bits.table(runs)
    assert "- TSFA's latency against T_bar: " in soft_bits.table(runs, budget_s=0.5)


def test_tsfa_summary_counts_rounds_over_t_bar_and_clients_scheduled():
    run = _tsfa([0.75, 0.5, 0.25, 0.625], 0.125)
    for r, rho, clients in zip(run["rounds"], (0.0, 0.9, 0.8, 0.9), (3, 4, 4, 3), strict=True):
        r.update({"tsfa/rho": rho, "tsfa/scheduled_clients": float(clients), "tsfa/queue": 0.125})
    row = soft_bits.tsfa_summary({"0": run}, budget_s=0.5).splitlines()[-1]
    # rho mean 0.65; 2 rounds over 0.5 s; largest 0.75; average 2.125 / 4; 3 and 4 clients twice
    assert row == "| 0 | 4 | 0.65; 0.0-0.9 | 2 | 0.750 | 0.531 | 0.125 | 0.125 | 3: 2, 4: 2 |"
