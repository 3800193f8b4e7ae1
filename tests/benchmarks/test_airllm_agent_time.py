"""benchmarks/airllm_agent_time.py: bad arguments stop it with one line (no model is built)."""

from __future__ import annotations

import importlib.util

import pytest

from tests.config_helpers import REPO


@pytest.fixture(scope="module")
def bench():
    path = REPO / "benchmarks" / "airllm_agent_time.py"
    spec = importlib.util.spec_from_file_location("airllm_agent_time", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rounds", "1"], "argument --rounds: ('1') must be an integer >= 2."),
        (["--warmup", "0"], "argument --warmup: ('0') must be an integer >= 1."),
        (["--seq-len", "8.5"], "argument --seq-len: ('8.5') must be an integer >= 1."),
    ],
)
def test_bad_arguments_get_one_line(bench, capsys, argv, message):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert message in capsys.readouterr().err


def test_the_report_gives_the_ratio_against_the_target(bench):
    one = {"median": 0.01, "min": 0.005, "max": 0.02, "n": 3}
    result = {
        "round_s": {"median": 10.0, "min": 9.0, "max": 11.0, "n": 3},
        "decision_s": one,
        "episode_update_s": None,
        "agent_ratio": {"median": 0.001, "min": 0.0005, "max": 0.002, "n": 3},
        "callback_ratio": one,
        "agent_ratio_amortised_steady": 0.001,
        "agent_ratio_amortised_all": 0.2,
        "first_decision_s": 2.0,
    }
    text = bench.report(result)
    assert "| agent / round | 0.1 % | 0.05 | 0.2 | 3 |" in text
    assert "0.10% (target < 5%)" in text and "20.00%" in text
