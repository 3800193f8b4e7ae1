"""The transmit benchmarks' spread and JSON."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "timing", Path(__file__).resolve().parents[2] / "benchmarks" / "timing.py"
)
timing = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(timing)


def test_spread_is_median_min_and_max():
    assert timing.spread([3.0, 1.0, 2.0, 10.0]) == {"median_s": 2.5, "min_s": 1.0, "max_s": 10.0}


def test_json_keeps_arguments_load_and_results(tmp_path):
    out = tmp_path / "t.json"
    args = argparse.Namespace(repeats=5, json=out)
    timing.write_json(out, args, {"x": {"median_s": 1.0}})
    payload = json.loads(out.read_text())
    assert payload["args"] == {"repeats": 5, "json": str(out)}
    assert len(payload["load_average"]) == 3 and payload["results"] == {"x": {"median_s": 1.0}}
    timing.write_json(None, args, {})  # no path: nothing written, no error
