"""The start-up benchmark reads the child's stamp lines into seconds since launch and splits
them into phases."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "startup_bench", Path(__file__).resolve().parents[2] / "benchmarks" / "startup.py"
)
startup = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(startup)


def test_stamps_become_seconds_since_launch_and_phases_their_spans():
    out = "\n".join(
        [
            "INFO something logged",
            f"{startup.STAMP_PREFIX} imports 1006.0",
            f"{startup.STAMP_PREFIX} data 1008.5",
            f"{startup.STAMP_PREFIX} data 1030.0",  # a second setup call: the first one counts
            f"{startup.STAMP_PREFIX} model 1009.0",
            f"{startup.STAMP_PREFIX} round0_validation 1012.0",
            f"{startup.STAMP_PREFIX} first_step 1012.25",
        ]
    )
    stamps = startup.parse_stamps(out, 1000.0)
    assert stamps == pytest.approx(
        {"imports": 6.0, "data": 8.5, "model": 9.0, "round0_validation": 12.0, "first_step": 12.25}
    )
    later = {k: v + 2.0 for k, v in stamps.items()}
    summary = startup.summarise([stamps, later, stamps])
    assert summary["first_step"]["at_s"] == pytest.approx(12.25)
    assert summary["first_step"]["at_max_s"] == pytest.approx(14.25)
    assert summary["data"]["duration_s"] == pytest.approx(2.5)
    assert summary["model"]["duration_s"] == pytest.approx(0.5)
    assert summary["imports"]["duration_s"] == pytest.approx(6.0)
