"""The federated module end to end on the tiny model: rounds, export, resume, ranks."""

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from lit_airlora.federated.aggregators import FFALoRA
from lit_airlora.federated.heterogeneous import HeteroFL
from tests.helpers import tiny_fit


def _flat(adapter):
    return torch.cat([adapter[k].flatten() for k in sorted(adapter)])


def test_rounds_train_log_and_export(tmp_path, tiny_llama_dir, tokenizer):
    trainer, module = tiny_fit(tmp_path, tiny_llama_dir, tokenizer, max_epochs=2)
    metrics = trainer.logged_metrics
    assert metrics["round/clients"] == 3
    # q_proj 64->64 and v_proj 64->32, rank 4, A and B, 2 layers, float32, per client.
    per_client = 32 * 2 * 4 * ((64 + 64) + (64 + 32))
    assert metrics["comm/uplink_bits_per_client"] == per_client
    assert metrics["channel/agg_nmse"] == 0  # no channel: the aggregate is the ideal one
    assert len(module.perplexity_history) == 3
    assert module.perplexity_history[-1] < module.perplexity_history[0]
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    exported = PeftModel.from_pretrained(base, module.exported_adapter_dir).eval()
    ids = torch.randint(3, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    module.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            exported(input_ids=ids).logits, module.model(input_ids=ids).logits
        )


def test_resume_after_a_round_matches_an_uninterrupted_run(tmp_path, tiny_llama_dir, tokenizer):
    _, full = tiny_fit(tmp_path / "full", tiny_llama_dir, tokenizer, max_epochs=3)
    trainer, _ = tiny_fit(tmp_path / "cut", tiny_llama_dir, tokenizer, max_epochs=1)
    ckpt = (
        trainer.checkpoint_callback.last_model_path or trainer.checkpoint_callback.best_model_path
    )
    _, resumed = tiny_fit(tmp_path / "cut", tiny_llama_dir, tokenizer, max_epochs=3, ckpt_path=ckpt)
    torch.testing.assert_close(_flat(resumed.global_adapter), _flat(full.global_adapter))
    assert resumed.ledger.total_bits == full.ledger.total_bits


def test_checkpoint_holds_the_adapter_not_the_base_model(tmp_path, tiny_llama_dir, tokenizer):
    trainer, _ = tiny_fit(tmp_path, tiny_llama_dir, tokenizer, max_epochs=1)
    ckpt = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert ckpt["state_dict"] and all(".lora_" in k for k in ckpt["state_dict"])
    assert set(ckpt["federation"]) >= {"global_adapter", "ranks", "ledger", "clients"}


def test_ffa_lora_keeps_a_frozen(tmp_path, tiny_llama_dir, tokenizer):
    import lightning as L

    from tests.helpers import tiny_module

    L.seed_everything(0, verbose=False)
    start = {k: v.clone() for k, v in tiny_module(tiny_llama_dir).global_adapter.items()}
    _, module = tiny_fit(
        tmp_path, tiny_llama_dir, tokenizer, max_epochs=1, module_kwargs={"aggregator": FFALoRA()}
    )
    for name, value in module.global_adapter.items():
        changed = not torch.equal(value, start[name])
        assert changed == name.endswith("lora_B")


def test_heterogeneous_client_ranks_send_smaller_payloads(tmp_path, tiny_llama_dir, tokenizer):
    trainer, module = tiny_fit(
        tmp_path,
        tiny_llama_dir,
        tokenizer,
        max_epochs=1,
        module_kwargs={"aggregator": HeteroFL(), "client_ranks": [1, 2, 4]},
    )
    full = 32 * 2 * 4 * ((64 + 64) + (64 + 32))
    assert trainer.logged_metrics["comm/uplink_bits_per_client"] < full
    assert module.ranks == dict.fromkeys(module.ranks, 4)


def test_set_ranks_between_rounds_changes_the_payload(tmp_path, tiny_llama_dir, tokenizer):
    from lit_airlora.federated.stages import StageCallback

    class HalveRanks(StageCallback):
        def on_round_start(self, trainer, pl_module, round_idx):
            if round_idx == 1:
                pl_module.set_ranks(2)

    halve = HalveRanks()
    trainer, module = tiny_fit(tmp_path, tiny_llama_dir, tokenizer, max_epochs=2, callbacks=[halve])
    assert set(module.ranks.values()) == {2}
    assert trainer.logged_metrics["comm/uplink_bits_per_client"] == 32 * 2 * 2 * (128 + 96)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"learning_rate": 0.0}, r"`learning_rate` \(0.0\) must be a finite number > 0"),
        ({"learning_rate": float("inf")}, r"`learning_rate` \(inf\) must be a finite number"),
        ({"weight_decay": float("nan")}, r"`weight_decay` \(nan\) must be a finite number"),
        ({"adapter_name": "my adapter"}, r"`adapter_name` \('my adapter'\) must be a name"),
        ({"client_ranks": [9]}, r"`client_ranks` entry \(9\)"),
        (
            {"model": "./no/such/folder"},
            r"`model` \('./no/such/folder'\) is not an existing folder",
        ),
    ],
)
def test_bad_module_arguments(tiny_llama_dir, kwargs, message):
    from tests.helpers import tiny_module

    with pytest.raises(ValueError, match=message):
        tiny_module(tiny_llama_dir, **kwargs)


def test_kept_client_optimizer_state_is_checkpointed_and_resumes(
    tmp_path, tiny_llama_dir, tokenizer
):
    kwargs = {"keep_client_optimizer_state": True}
    _, full = tiny_fit(tmp_path / "full", tiny_llama_dir, tokenizer, 3, module_kwargs=kwargs)
    assert full.clients.optimizer_states  # clients seen so far keep their Adam moments
    trainer, _ = tiny_fit(tmp_path / "cut", tiny_llama_dir, tokenizer, 1, module_kwargs=kwargs)
    ckpt_path = trainer.checkpoint_callback.best_model_path
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["federation"]["clients"]["optimizer_states"]
    _, resumed = tiny_fit(
        tmp_path / "cut", tiny_llama_dir, tokenizer, 3, module_kwargs=kwargs, ckpt_path=ckpt_path
    )
    torch.testing.assert_close(_flat(resumed.global_adapter), _flat(full.global_adapter))


def test_non_finite_losses_never_reach_the_adapter(
    tmp_path, tiny_llama_dir, tokenizer, monkeypatch
):
    from lit_airlora.module import FederatedLoRAModule

    original = FederatedLoRAModule._regularised  # the loss every local step backpropagates
    calls = {"n": 0}

    def sometimes_nan(self, task_loss):
        calls["n"] += 1
        loss = original(self, task_loss)
        return loss * float("nan") if calls["n"] % 2 else loss

    monkeypatch.setattr(FederatedLoRAModule, "_regularised", sometimes_nan)
    trainer, module = tiny_fit(tmp_path, tiny_llama_dir, tokenizer, max_epochs=1)
    assert trainer.logged_metrics["round/skipped_steps"] == 3  # 3 clients x 2 steps, every other
    assert all(torch.isfinite(t).all() for t in module.global_adapter.values())
    assert torch.isfinite(trainer.logged_metrics["round/train_loss"])


def test_hetlora_prunes_and_fedsa_keeps_b_local_end_to_end(tmp_path, tiny_llama_dir, tokenizer):
    from lit_airlora.federated.fedsa import FedSALoRA
    from lit_airlora.federated.heterogeneous import HetLoRA

    hetlora = HetLoRA(prune_fraction=0.5, prune_threshold=0.99)  # every client prunes
    _, module = tiny_fit(
        tmp_path / "het", tiny_llama_dir, tokenizer, max_epochs=2,
        module_kwargs={"aggregator": hetlora, "client_ranks": [2, 4]},
    )  # fmt: skip
    assert hetlora.pruned_caps and all(cap <= 2 for cap in hetlora.pruned_caps.values())
    assert module.clients.state_dict()["aggregator"] == hetlora.state_dict()
    fedsa = FedSALoRA()
    _, module = tiny_fit(
        tmp_path / "fedsa", tiny_llama_dir, tokenizer, max_epochs=2,
        module_kwargs={"aggregator": fedsa},
    )  # fmt: skip
    b_names = [n for n in module.global_adapter if n.endswith("lora_B")]
    assert all(module.global_adapter[n].abs().max() == 0 for n in b_names)  # B never sent
    assert fedsa.local_b and all(
        any(t.abs().max() > 0 for t in own.values()) for own in fedsa.local_b.values()
    )
