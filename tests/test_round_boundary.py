"""The round boundary and the round plan under Lightning's Trainer flags (tiny model)."""

import math
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lit_airlora.federated.stages import StageCallback
from lit_airlora.federated.trainer_checks import _check_distributed_sampler
from tests.helpers import tiny_fit


class PlanProbe(StageCallback):
    """Records the plan seen at round start and the context's plan at transmit."""

    def __init__(self):
        self.at_start, self.at_transmit = [], []

    def on_round_start(self, trainer, pl_module, round_idx):
        self.at_start.append((round_idx, pl_module.round_plan))

    def on_upload_transmit(self, trainer, pl_module, ctx):
        self.at_transmit.append(ctx.plan)


def test_plan_is_published_before_round_start(tmp_path, tiny_llama_dir, tokenizer):
    probe = PlanProbe()
    trainer, _ = tiny_fit(tmp_path, tiny_llama_dir, tokenizer, max_epochs=2, callbacks=[probe])
    schedule = trainer.datamodule.schedule
    assert [(r, p.round_idx) for r, p in probe.at_start] == [(0, 0), (1, 1)]
    assert [p.clients for _, p in probe.at_start] == [tuple(schedule.clients(r)) for r in (0, 1)]
    assert probe.at_transmit == [p for _, p in probe.at_start]
    assert probe.at_start[0][1].steps_this_rank == 3 * 2  # 3 clients x 2 local steps


class CountValidation(Callback):
    """Counts validation batches per validation run (sanity checks apart)."""

    def __init__(self):
        self.runs, self.sanity = [], []

    def on_validation_epoch_start(self, trainer, pl_module):
        (self.sanity if trainer.sanity_checking else self.runs).append(0)

    def on_validation_batch_end(self, trainer, pl_module, *args):
        (self.sanity if trainer.sanity_checking else self.runs)[-1] += 1


def test_truncated_rounds_aggregate_and_validation_flags_apply(tmp_path, tiny_llama_dir, tokenizer):
    counter = CountValidation()
    trainer, module = tiny_fit(
        tmp_path,
        tiny_llama_dir,
        tokenizer,
        max_epochs=2,
        callbacks=[counter],
        data_kwargs={"val_batch_size": 1},
        limit_train_batches=3,  # 3 clients x 2 steps cut to 3: the third client never starts
        check_val_every_n_epoch=2,
        limit_val_batches=2,
        num_sanity_val_steps=1,
    )
    assert trainer.global_step == 6 and trainer.current_epoch == 2
    assert trainer.logged_metrics["round/clients"] == 2
    # Round 0 through Lightning's loop (limit_val_batches applies), then after round 1 only.
    assert counter.sanity == [1] and counter.runs == [2, 2]
    assert len(module.perplexity_history) == 2
    assert "val/perplexity_round0" in trainer.callback_metrics


def test_max_steps_ends_the_round_where_lightning_stops(tmp_path, tiny_llama_dir, tokenizer):
    probe = PlanProbe()
    trainer, module = tiny_fit(
        tmp_path, tiny_llama_dir, tokenizer, max_epochs=3, max_steps=5, callbacks=[probe]
    )
    assert trainer.global_step == 5 and len(probe.at_transmit) == 1
    assert probe.at_transmit[0].steps_this_rank == 5 and len(probe.at_transmit[0].clients) == 3
    assert module.ledger.total_bits > 0


def test_max_time_stops_at_a_round_end(tmp_path, tiny_llama_dir, tokenizer):
    probe = PlanProbe()
    trainer, _ = tiny_fit(
        tmp_path,
        tiny_llama_dir,
        tokenizer,
        max_epochs=3,
        max_time={"seconds": 0.001},
        callbacks=[probe],
    )
    assert trainer.global_step == 6 and len(probe.at_transmit) == 1  # one whole round


def test_bf16_mixed_trains_float32_adapters_on_cpu(tmp_path, tiny_llama_dir, tokenizer):
    trainer, module = tiny_fit(
        tmp_path, tiny_llama_dir, tokenizer, max_epochs=1, precision="bf16-mixed"
    )
    assert all(t.dtype == torch.float32 for t in module.global_adapter.values())
    assert math.isfinite(float(trainer.logged_metrics["round/train_loss"]))
    assert math.isfinite(module.perplexity_history[-1])


def test_no_validation_data_trains_without_scoring(tmp_path, tiny_llama_dir, tokenizer):
    trainer, module = tiny_fit(
        tmp_path, tiny_llama_dir, tokenizer, max_epochs=1, data_kwargs={"val_fraction": 0.0}
    )
    assert trainer.global_step == 6 and module.perplexity_history == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"val_check_interval": 0.5}, r"`val_check_interval` \(0.5\) would validate"),
        ({"val_check_interval": 2}, r"`val_check_interval` \(2\)"),
        ({"precision": "bf16-true"}, r"`precision` \('bf16-true'\) casts the LoRA adapters"),
        (
            {"callbacks": [ModelCheckpoint(every_n_train_steps=2)]},
            r"`ModelCheckpoint\(every_n_train_steps=2\)` saves in the middle of a round",
        ),
        (
            {"accumulate_grad_batches": 2},
            r"accumulate_grad_batches=2.*manual optimization|manual optimization.*accumulate",
        ),
    ],
)
def test_flags_a_round_cannot_honour_are_refused_before_training(
    tmp_path, tiny_llama_dir, tokenizer, flags, message
):
    with pytest.raises((ValueError, MisconfigurationException), match=message):
        tiny_fit(tmp_path, tiny_llama_dir, tokenizer, max_epochs=1, **flags)


def test_distributed_sampler_is_refused_under_ddp_only():
    connector = SimpleNamespace(use_distributed_sampler=True)
    with pytest.raises(ValueError, match=r"`use_distributed_sampler` \(True\)"):
        _check_distributed_sampler(SimpleNamespace(world_size=2, _accelerator_connector=connector))
    _check_distributed_sampler(SimpleNamespace(world_size=1, _accelerator_connector=connector))
