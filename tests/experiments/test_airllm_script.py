"""docs/experiments/airllm.py: its arguments, run order and pricing (no model is trained)."""

from __future__ import annotations

import importlib
import math
import sys

import pytest

from tests.config_helpers import REPO


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, str(REPO / "docs" / "experiments"))
    try:
        yield importlib.import_module("airllm")
    finally:
        sys.path.remove(str(REPO / "docs" / "experiments"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rounds", "0"], "argument --rounds: ('0') must be an integer >= 1."),
        (["--episode-length", "x"], "argument --episode-length: ('x') must be an integer >= 1."),
        (["--val-fraction", "1"], "argument --val-fraction: ('1') must be a number in (0, 1)."),
        (["--lr", "nan"], "argument --lr: ('nan') must be a finite number > 0."),
        (["--snrs", "inf"], "argument --snrs: ('inf') must be a finite SNR in dB, e.g. -5."),
    ],
)
def test_bad_arguments_get_one_line(script, capsys, argv, message):
    with pytest.raises(SystemExit):
        script.parse_args(argv)
    assert message in capsys.readouterr().err


def test_fixed_ranks_train_once_and_low_snrs_run_first(script):
    methods = ["PPO-only", "fixed r=1", "AirLLM (PPO + DDIM)"]
    args = script.parse_args(["--snrs", "-5", "0", "10", "--methods", *methods])
    assert script.runs_to_do(args) == [
        ("fixed r=1", -5.0),
        ("AirLLM (PPO + DDIM)", -5.0),
        ("AirLLM (PPO + DDIM)", 0.0),
        ("PPO-only", -5.0),
        ("PPO-only", 0.0),
        ("AirLLM (PPO + DDIM)", 10.0),
        ("PPO-only", 10.0),
    ]
    args = script.parse_args(["--snrs", "-5", "10", "--methods", "fixed r=1", "--no-share-fixed"])
    assert script.runs_to_do(args) == [("fixed r=1", -5.0), ("fixed r=1", 10.0)]


def test_pricing_is_the_paper_capacity_cost(script):
    """c = 32 r (d_in + d_out + 1) / (B log2(1 + SNR) tau) per sent round, 0 when skipped,
    with B = 34.52 MHz and tau = 1 s from configs/airllm/environment.yaml."""
    run = {
        "rank_history": {"a": [8, 2, 2]},
        "shapes": {"a": [576, 576]},
        "max_rank": 8,
        "rounds": [{"skipped": 0.0, "agent_s": 0.0, "wall_s": 1.0}] * 2
        + [{"skipped": 1.0, "agent_s": 0.0, "wall_s": 1.0}],
    }
    out = script.priced(run, 0.0)
    capacity = 34.52e6 * math.log2(2.0)
    expected = [32 * 8 * 1153 / capacity, 32 * 2 * 1153 / capacity, 0.0]
    assert out["costs"] == pytest.approx(expected, rel=1e-9)
    assert out["skipped_rounds"] == 1 and out["over_budget_rounds"] == 0
    assert out["mean_rank"] == pytest.approx(4.0)
