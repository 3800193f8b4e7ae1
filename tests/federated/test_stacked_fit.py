"""``stacked_clients: true`` end to end: the same rounds as the sequential loop, or a refusal.

Tolerance of the fit comparison: float32 ``atol = 2e-5`` on the global adapter after 2 rounds
of 3 clients x 2 clipped AdamW steps (summation order only: see test_client_stack.py); the
ledger, step counter and uploads' ranks are compared exactly.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Callback

from lit_airlora.errors import ConfigError
from lit_airlora.federated.stacked_round import check_stacked_fit
from lit_airlora.lora.config import LoRASettings
from tests.helpers import tiny_fit, tiny_module

ATOL = 2e-5


def test_a_stacked_fit_matches_the_sequential_fit(tmp_path, tiny_llama_dir, tokenizer):
    options = {
        "client_ranks": [4, 2, 3],  # heterogeneous ranks
        "gradient_clip_val": 0.05,  # clipping active
        "keep_client_optimizer_state": True,  # 6 clients, 3 per round: some come back
    }
    runs = {}
    for stacked in (False, True):
        module_kwargs = {**options, "stacked_clients": stacked}
        runs[stacked] = tiny_fit(
            tmp_path / str(stacked),
            tiny_llama_dir,
            tokenizer,
            max_epochs=2,
            module_kwargs=module_kwargs,
        )
    (seq_trainer, seq), (stk_trainer, stk) = runs[False], runs[True]
    assert stk_trainer.global_step == seq_trainer.global_step == 12
    assert stk.ledger.state_dict() == seq.ledger.state_dict()
    for name, value in seq.global_adapter.items():
        torch.testing.assert_close(stk.global_adapter[name], value, atol=ATOL, rtol=0, msg=name)
    assert set(stk.clients.optimizer_states) == set(seq.clients.optimizer_states)
    for client, state in seq.clients.optimizer_states.items():
        for index, values in state.items():
            torch.testing.assert_close(
                stk.clients.optimizer_states[client][index]["exp_avg"],
                values["exp_avg"],
                atol=ATOL,
                rtol=0,
            )
    for key in ("round/train_loss", "val/perplexity"):
        torch.testing.assert_close(
            stk_trainer.logged_metrics[key], seq_trainer.logged_metrics[key], atol=1e-4, rtol=0
        )


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"lora": LoRASettings(max_rank=4, dropout=0.1)}, "lora.dropout"),
        ({"lora": LoRASettings(max_rank=4, svd_form=True)}, "lora.svd_form"),
        ({"lora": LoRASettings(max_rank=4, bias="all")}, "lora.bias"),
        ({"stacked_clients": "yes"}, "stacked_clients"),
    ],
    ids=["dropout", "svd_form", "bias", "not-a-bool"],
)
def test_options_a_stacked_step_does_not_compute_are_refused(tiny_llama_dir, kwargs, named):
    kwargs = {"stacked_clients": True, **kwargs}
    with pytest.raises((ValueError, TypeError), match="stacked_clients") as info:
        tiny_module(tiny_llama_dir, **kwargs)
    assert named in str(info.value) and "\n" not in str(info.value)


class _Regulariser(Callback):
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        pass


@pytest.mark.parametrize(
    ("trainer", "named"),
    [
        (SimpleNamespace(world_size=2, precision="32-true", callbacks=[]), "devices"),
        (SimpleNamespace(world_size=1, precision="16-mixed", callbacks=[]), "precision"),
        (
            SimpleNamespace(world_size=1, precision="32-true", callbacks=[_Regulariser()]),
            "_Regulariser",
        ),
    ],
    ids=["ddp", "16-mixed", "per-step-callback"],
)
def test_trainers_a_stacked_round_cannot_honour_are_refused(trainer, named):
    with pytest.raises(ConfigError, match="stacked_clients") as info:
        check_stacked_fit(trainer)
    assert named in str(info.value) and "\n" not in str(info.value)
    check_stacked_fit(SimpleNamespace(world_size=1, precision="bf16-mixed", callbacks=[Callback()]))
