"""The round-overhead benchmark times every forward and backward pass the module runs, so the
time it reports outside the passes is the framework's own."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.helpers import tiny_datamodule, tiny_module

_SPEC = importlib.util.spec_from_file_location(
    "round_overhead", Path(__file__).resolve().parents[2] / "benchmarks" / "round_overhead.py"
)
round_overhead = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(round_overhead)


def test_instrumented_module_times_one_forward_and_one_backward_per_local_step(
    tiny_llama_dir, tokenizer, tmp_path
):
    passes = round_overhead.PassTimer()
    module = tiny_module(tiny_llama_dir)
    round_overhead.instrument_module(module, passes)
    datamodule = tiny_datamodule(tmp_path, tokenizer, clients_per_round=3, local_steps=2)
    trainer = round_overhead.timing_trainer([], max_epochs=1, default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=datamodule)
    assert passes.calls == 2 * 3 * 2
    assert passes.total_s > 0


def test_a_pass_count_other_than_two_per_step_is_refused():
    good = {"time_s": 1.0, "passes_s": 0.5, "passes": 16, "peak_rss_mb": 1.0}
    round_overhead.check_passes({"bare": [good], "lightning": [dict(good)]}, 16)
    with pytest.raises(RuntimeError, match="lightning timed \\[8\\]"):
        round_overhead.check_passes({"bare": [good], "lightning": [dict(good, passes=8)]}, 16)
