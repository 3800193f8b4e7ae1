"""The rank sweep changes the SNR and the rank policy where the rank-selection config has them:
every overridden path must exist in the composed config, the channel and the selection's MSE model
must get the same SNR, and the bound's learning rate must be the run's."""

from __future__ import annotations

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


def test_table_reports_each_policy_and_snr():
    def record(policy, snr, ppl, bits, ranks):
        return {
            "policy": policy,
            "snr_db": snr,
            "seed": 0,
            "final_perplexity": ppl,
            "total_bits": bits,
            "agg_nmse_mean": 0.5,
            "mean_rank": ranks,
        }

    records = [
        record("1", 0.0, 80.0, 2e6, [1.0, 1.0]),
        record("8", 0.0, 90.0, 16e6, [8.0, 8.0]),
        record(rank_sweep.SELECTION, 0.0, 85.0, 10e6, [8.0, 3.5]),
    ]
    text = rank_sweep.table(records, [0.0], ["1", "8", rank_sweep.SELECTION])
    assert "| fixed rank 1 | 80.00 / 2.0 / 0.50 |" in text
    assert "| fixed rank 8 | 90.00 / 16.0 / 0.50 |" in text
    assert "| backtracking selection | 85.00 / 10.0 / 0.50 |" in text
    assert "mean rank by round: 8.00, 3.50" in text
