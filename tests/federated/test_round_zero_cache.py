"""The round-0 metrics cache: a hit logs exactly what validating logs; any key input misses."""

import os
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch

from lit_airlora.federated.round_zero_cache import (
    read_metrics,
    round_zero_cache_dir,
    tensors_digest,
    write_metrics,
)
from lit_airlora.tasks import CausalLM
from tests.helpers import tiny_fit


class _RoundZeroProbe:
    """Counts the validation forwards of round 0 and keeps its logged metrics."""

    def __init__(self, monkeypatch):
        self.forwards = 0
        original = CausalLM.update_metrics

        def counted(task, metrics, model, batch):
            self.forwards += 1
            return original(task, metrics, model, batch)

        monkeypatch.setattr(CausalLM, "update_metrics", counted)


class OtherMetricTask(CausalLM):
    """The same metric under another task definition (its class is part of the key)."""


class NudgeAdapter(L.Callback):
    """Changes one LoRA B factor before round 0 (a callback's start hook runs before ours)."""

    def on_train_start(self, trainer, pl_module):
        factor = next(p for n, p in pl_module.named_parameters() if "lora_B" in n)
        with torch.no_grad():
            factor.add_(1e-3)


def _round_zero(tmp_path, model_dir, tokenizer, probe, nudge=False, **kwargs):
    """One round; returns the round-0 metrics logged, the round-0 forwards and the cache files."""
    before = probe.forwards
    captured = {}

    class Capture(L.Callback):
        def on_validation_end(self, trainer, pl_module):
            if not captured:
                captured.update({k: float(v) for k, v in trainer.callback_metrics.items()})
                captured["forwards"] = probe.forwards - before

    module_kwargs = {"learning_rate": 5e-3, **kwargs.pop("module_kwargs", {})}
    tiny_fit(
        tmp_path / "run",
        str(model_dir),
        tokenizer,
        max_epochs=1,
        callbacks=[NudgeAdapter(), Capture()] if nudge else [Capture()],
        module_kwargs=module_kwargs,
        **kwargs,
    )
    files = sorted(p.name for p in round_zero_cache_dir().glob("*.json"))
    forwards = captured.pop("forwards")
    return {k: v for k, v in captured.items() if k.endswith("_round0")}, forwards, files


def test_a_cached_round_zero_logs_the_uncached_metrics_and_every_input_misses(
    tmp_path, tiny_llama_dir, tokenizer, monkeypatch
):
    model_dir = Path(shutil.copytree(tiny_llama_dir, tmp_path / "model"))
    probe = _RoundZeroProbe(monkeypatch)
    off = {"module_kwargs": {"cache_round0_metrics": False}}
    uncached, uncached_forwards, files = _round_zero(tmp_path, model_dir, tokenizer, probe, **off)
    assert files == [] and uncached_forwards > 0 and "val/perplexity_round0" in uncached
    first, first_forwards, files = _round_zero(tmp_path, model_dir, tokenizer, probe)
    assert (first, first_forwards, len(files)) == (uncached, uncached_forwards, 1)
    hit, hit_forwards, after_hit = _round_zero(tmp_path, model_dir, tokenizer, probe)
    assert hit == uncached  # exactly: the values logged are the ones stored
    assert hit_forwards == 0 and after_hit == files
    changes = {
        "initial adapter": {"nudge": True},
        "validation data": {"data_kwargs": {"val_fraction": 0.3}},
        "eval batch size": {"data_kwargs": {"val_batch_size": 4}},
        "validation batches run": {"limit_val_batches": 1},
        "precision": {"precision": "bf16-mixed"},
        "task definition": {"module_kwargs": {"task": OtherMetricTask()}},
        "LoRA settings": {"module_kwargs": {"lora": {"max_rank": 4, "alpha": 4.0}}},
    }
    for name, change in changes.items():
        _, forwards, now = _round_zero(tmp_path, model_dir, tokenizer, probe, **change)
        assert forwards > 0 and len(now) == len(files) + 1, f"{name} did not miss"
        files = now
    weights = model_dir / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    _, forwards, now = _round_zero(tmp_path, model_dir, tokenizer, probe)
    assert forwards > 0 and len(now) == len(files) + 1, "model file did not miss"


def test_stored_metrics_round_trip_and_a_bad_file_is_a_miss(tmp_path):
    write_metrics("k1", {"val/perplexity": 123.456789012345, "val/loss": 4.8}, tmp_path)
    assert read_metrics("k1", tmp_path) == {"val/perplexity": 123.456789012345, "val/loss": 4.8}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k1.json"]  # no scratch file left
    assert read_metrics("k2", tmp_path) is None
    (tmp_path / "k3.json").write_text('{"key": "k3", "metrics": {"val/loss": ')  # truncated
    assert read_metrics("k3", tmp_path) is None
    (tmp_path / "k4.json").write_text((tmp_path / "k1.json").read_text())  # another key's file
    assert read_metrics("k4", tmp_path) is None
    write_metrics("k5", {"val/perplexity": float("inf")}, tmp_path)
    assert not (tmp_path / "k5.json").exists()


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t + 1e-7 * torch.ones_like(t),
        lambda t: t.double(),
        lambda t: t.reshape(2, -1),
    ],
    ids=["value", "dtype", "shape"],
)
def test_tensor_digest_sees_values_dtypes_and_shapes(change):
    t = torch.arange(8, dtype=torch.float32)
    assert tensors_digest([("a", t)]) == tensors_digest([("a", t.clone())])
    assert tensors_digest([("a", t)]) != tensors_digest([("a", change(t))])
