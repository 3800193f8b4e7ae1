"""docs/experiments/pairzero.py: its runs, the merge of separate processes' records and the
table's standard error (no model is trained)."""

from __future__ import annotations

import importlib
import json
import math
import sys

import pytest

from tests.config_helpers import REPO


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, str(REPO / "docs" / "experiments"))
    try:
        yield importlib.import_module("pairzero")
    finally:
        sys.path.remove(str(REPO / "docs" / "experiments"))


def test_a_sized_gamma_adds_one_run_at_the_papers_gamma(script):
    args = script.parse_args(["--clip", "20", "--snrs", "0", "20", "--schedule-snr", "20"])
    runs = script.runs(args)
    files, overrides = runs["Analog 20 dB, gamma 100"]
    assert files[-1] == "pairzero_analog.yaml"
    assert overrides[script.ZO + "clip"] == 100.0
    assert script.scale(args)[script.ZO + "clip"] == 20.0  # every other run
    assert list(runs) == [
        "Perfect", "Analog 20 dB", "Sign 20 dB", "Analog 0 dB", "Sign 0 dB",
        "Analog 20 dB, static", "Analog 20 dB, reversed", "Analog 20 dB, gamma 100",
        "FO-Adam", "FO-SGD",
    ]  # fmt: skip
    paper = script.runs(script.parse_args(["--clip", "100"]))
    assert not any("gamma" in name for name in paper)


def _row(name: str, snr: float, end: float) -> dict:
    return {
        "run": name, "snr_db": snr, "rounds": 4, "metric_start": 0.2, "metric_end": end,
        "metric_by_validation": [0.2, end], "agg_mse": math.nan, "sign_flip_rate": math.nan,
        "epsilon": math.inf, "bits_per_client_round": 16.0, "wall_s": 60.0,
    }  # fmt: skip


def test_merge_orders_runs_and_fills_what_old_records_lack(script, tmp_path):
    a = {
        "args": {"val_every": 2},
        "runs": [_row("Sign 0 dB", 0.0, 0.3), _row("Perfect", math.nan, 0.5)],
    }
    b = {"args": {"val_every": 4}, "runs": [{**_row("FO-Adam", math.nan, 0.6), "val_examples": 60}]}
    c = {
        "args": {"val_every": 2},
        "runs": [_row("Analog 20 dB", 20.0, 0.25), _row("Sign 20 dB", 20.0, 0.2)],
    }
    paths = []
    for name, part in (("a", a), ("b", b), ("c", c)):
        paths.append(str(tmp_path / f"{name}.json"))
        (tmp_path / f"{name}.json").write_text(json.dumps(part))
    merged = script.merge(paths, tmp_path / "all", val_examples=120)
    names = [r["run"] for r in merged["runs"]]
    assert names == ["Perfect", "Analog 20 dB", "Sign 20 dB", "Sign 0 dB", "FO-Adam"]
    by_name = {r["run"]: r for r in merged["runs"]}
    assert by_name["FO-Adam"]["val_every"] == 4 and by_name["FO-Adam"]["val_examples"] == 60
    assert by_name["Perfect"]["val_examples"] == 120  # the fallback, for records without it
    assert json.loads((tmp_path / "all.json").read_text())["sources"] == paths


def test_table_gives_the_binomial_standard_error_of_accuracy(script):
    row = {**_row("Perfect", math.nan, 0.25), "val_examples": 120}
    line = script.table([row], "accuracy").splitlines()[-1]
    assert f"0.250 ± {math.sqrt(0.25 * 0.75 / 120):.3f}" in line  # 0.040
    assert "±" not in script.table([row], "perplexity")


def test_table_reads_the_metric_at_a_round_from_the_validation_curve(script):
    row = {**_row("Perfect", math.nan, 0.5), "rounds": 80, "val_every": 20}
    row["metric_by_validation"] = [0.2, 0.25, 0.3, 0.4, 0.5]  # rounds 0, 20, 40, 60, 80
    assert script.metric_at(row, 40) == 0.3 and script.metric_at(row, 80) == 0.5
    assert math.isnan(script.metric_at(row, 30))
    line = script.table([row], "perplexity", at_rounds=[40, 30]).splitlines()[-1]
    assert "| 0.500 | 0.300 |  |" in line
