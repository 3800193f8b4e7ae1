"""The rank sweep changes the SNR and the rank policy where the rank-selection config has them:
every overridden path must exist in the composed config, the channel and the selection's MSE model
must get the same SNR, and the bound's learning rate must be the run's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "docs" / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
rank_sweep = pytest.importorskip("rank_sweep")


def _get(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


@pytest.mark.parametrize("policy", ["2", rank_sweep.SELECTION])
def test_overrides_replace_existing_settings(policy, tmp_path):
    config = rank_sweep.runner.load_config(rank_sweep.CONFIG)
    overrides = rank_sweep.policy_overrides(policy, -2.5, 3e-3)
    for dotted in overrides:
        _get(config, dotted)  # KeyError / IndexError if the config moved
    prepared = rank_sweep.runner.prepared_config(config, overrides, tmp_path)
    channel = _get(prepared, "trainer.callbacks.0")
    assert channel["class_path"].endswith("OverTheAirAggregation")
    assert channel["init_args"]["large_scale"]["init_args"] == {"snr_db": -2.5}
    assert channel["init_args"]["energy_budget_symbols"] == 900  # the budget is kept
    callback = _get(prepared, "trainer.callbacks.1")
    policy_node = callback["init_args"]["policy"]
    if policy == rank_sweep.SELECTION:
        assert policy_node["class_path"].endswith("BacktrackingRankSelection")
        mse = policy_node["init_args"]["mse_model"]["init_args"]
        assert mse["large_scale"] == channel["init_args"]["large_scale"]
        assert policy_node["init_args"]["lr"] == 3e-3
    else:
        assert policy_node == {
            "class_path": "lit_airlora.policy.fixed.FixedRank",
            "init_args": {"rank": 2},
        }
        assert callback["init_args"]["truncate"] == "prefix"


def _record(policy, snr, ppl, seed=0, bits=2e6, ranks=(8.0, 8.0)):
    return {
        "policy": policy,
        "snr_db": snr,
        "seed": seed,
        "final_perplexity": ppl,
        "perplexity": [120.0, 100.0, 95.0, 92.0, 90.0, ppl],
        "total_bits": bits,
        "agg_nmse_mean": 0.5,
        "mean_rank": list(ranks),
    }


NAMES = ["1", "2", "4", "8", rank_sweep.SELECTION]


def _sweep(snr, by_rank, selection=()):
    """Records at one SNR: ``by_rank`` maps a fixed rank to its final perplexity per seed."""
    out = [
        _record(rank, snr, ppl, seed)
        for rank, ppls in by_rank.items()
        for seed, ppl in enumerate(ppls)
    ]
    return out + [
        _record(rank_sweep.SELECTION, snr, p, s, 9e6, (8.0, 3.5)) for s, p in enumerate(selection)
    ]


def test_table_reports_mean_range_paired_difference_and_ranks():
    records = _sweep(-10.0, {"1": [80.0], "8": [90.0, 94.0]}, selection=[85.0])
    text = rank_sweep.table(records, [-10.0], NAMES)
    assert "| policy | -10 dB: final ppl / Mbit / NMSE |" in text
    assert "| fixed rank 1 | 80.00 (n=1) / 2.0 / 0.50 |" in text
    assert "| fixed rank 8 | 92.00 [90.00, 94.00] (n=2) / 2.0 / 0.50 |" in text
    assert "| fixed rank 2 | n/a |" in text
    assert "| backtracking selection | 85.00 (n=1) / 9.0 / 0.50 |" in text
    # within a seed: rank 1 and the selection against rank 8's seed 0 (90), not its mean (92)
    assert "| fixed rank 1 | -10.00 (n=1) |" in text
    assert "| backtracking selection | -5.00 (n=1) |" in text
    assert "mean rank by round: 8.00, 3.50" in text
    assert "- -10 dB: fewer than three fixed ranks ran: not decided." in text


@pytest.mark.parametrize(
    ("by_rank", "expected"),
    [
        # rank 4 below ranks 1 and 8 in both seeds by more than any rank's seed range (1.0)
        (
            {"1": [99.0, 100.0], "2": [97.0, 97.5], "4": [95.0, 95.5], "8": [97.0, 97.2]},
            "best fixed rank by mean 4 (95.25; at least 2 seed(s) each); clearly below ranks 1 and "
            "8: an interior optimum.",
        ),
        # the same means, but rank 8's seeds 4 apart: rank 4 against 8 is inside the spread
        (
            {"1": [99.0, 100.0], "2": [97.0, 97.5], "4": [95.0, 95.5], "8": [95.2, 99.2]},
            "inside the seed spread against rank(s) 8: not decided.",
        ),
        # the largest rank best in every seed, outside every range
        (
            {"1": [99.0, 100.0], "2": [97.0, 97.5], "4": [95.0, 95.5], "8": [93.0, 93.2]},
            "clearly below every other rank: no interior optimum (the best is an end).",
        ),
        # one seed: never decided, whatever the values
        (
            {"1": [99.0], "2": [97.0], "4": [95.0], "8": [97.0]},
            "inside the seed spread against rank(s) 1, 2, 8: not decided.",
        ),
        # signs differ between seeds (rank 4 below 8 in seed 0 only)
        (
            {"1": [99.0, 100.0], "2": [97.0, 97.5], "4": [95.0, 96.0], "8": [96.5, 95.9]},
            "inside the seed spread against rank(s) 8: not decided.",
        ),
    ],
)
def test_verdict_needs_every_seed_outside_the_spread(by_rank, expected):
    records = _sweep(0.0, by_rank)
    assert rank_sweep.verdict(records, 0.0, NAMES).endswith(expected)


def test_merge_refuses_the_same_run_twice_and_plot_takes_negative_snrs(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"records": _sweep(-10.0, {"8": [90.0]})}))
    second.write_text(json.dumps({"records": _sweep(-10.0, {"8": [91.0]})}))
    with pytest.raises(ValueError, match="policy 8 at -10 dB seed 0 is in both"):
        rank_sweep.merge([first, second])
    second.write_text(json.dumps({"records": _sweep(0.0, {"4": [91.0, 92.0]}, [93.0])}))
    records = rank_sweep.merge([first, second])
    assert sorted({r["snr_db"] for r in records}) == [-10.0, 0.0]
    rank_sweep.plot(records, [-10.0, 0.0], NAMES, tmp_path / "rank_sweep.png")
    assert (tmp_path / "rank_sweep.png").stat().st_size > 0
