"""The SOFT experiment's bits-to-target arithmetic on hand-made curves (closed forms), its
verdict rule, and its refusal of a bad run plan or of the same run in two merged files."""

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
    # a curve that rises again (overfitting) keeps the best it reached: its running minimum
    rising = _run([100.0, 80.0, 60.0, 70.0, 65.0], 10.0)
    assert [p for _, _, p in soft_bits.targets(rising)][:4] == [80.0, 60.0, 60.0, 60.0]
    soft = _run([100.0, 70.0, 55.0, 45.0, 41.0], 3.0)
    assert soft_bits.bits_to_target(soft, 60.0) == 6.0  # round 2
    assert soft_bits.bits_to_target(soft, 45.0) == 9.0  # round 3, equality counts
    assert soft_bits.bits_to_target(soft, 40.0) is None  # never reached


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
