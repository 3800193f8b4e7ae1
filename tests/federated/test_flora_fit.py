"""FLoRA end to end on the tiny model: merge into the base weights, restart, export, resume."""

import numpy as np
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from lit_airlora.federated.flora import FLoRA, stack_factors
from lit_airlora.federated.stages import StageCallback
from lit_airlora.lora.merge import base_weight
from tests.helpers import tiny_fit

#: Heterogeneous ranks: clients 0, 3 rank 1; 1, 4 rank 2; 2, 5 rank 4 (max_rank 4).
CLIENT_RANKS = [1, 2, 4]


class LastRound(StageCallback):
    """Keeps what the server received in the last round, and the base weights before it.

    The closed form is checked on the received (quantised) factors: stacking is exact on
    whatever arrives."""

    def on_round_start(self, trainer, pl_module, round_idx):
        self.before = {n: base_weight(f).detach().clone() for n, f in pl_module.lora_layers.items()}
        self.start = {n: t.clone() for n, t in pl_module.global_adapter.items()}

    def on_upload_aggregate(self, trainer, pl_module, ctx):
        self.uploads = list(ctx.uploads)


def _closed_form(uploads, module, max_rank):
    """``sum_k p_k (R / r_k) B_k A_k`` of the received factors (numpy, float64)."""
    total = sum(u.weight for u in uploads)
    out = 0.0
    for u in uploads:
        r = u.ranks[module]
        b = u.tensors[f"{module}.lora_B"].double().numpy()[:, :r]
        a = u.tensors[f"{module}.lora_A"].double().numpy()[:r]
        out = out + (u.weight / total) * (max_rank / r) * b @ a
    return out


def test_flora_merges_the_exact_weighted_sum_restarts_and_exports(
    tmp_path, tiny_llama_dir, tokenizer
):
    from lit_airlora.callbacks.digital_link import DigitalUplink
    from lit_airlora.channel.abstraction import AbstractionLink

    probe, uplink = LastRound(), DigitalUplink(AbstractionLink(bandwidth_hz=1e6))
    kwargs = {"aggregator": FLoRA(), "client_ranks": CLIENT_RANKS}
    trainer, module = tiny_fit(
        tmp_path,
        tiny_llama_dir,
        tokenizer,
        max_epochs=2,
        callbacks=[uplink, probe],
        module_kwargs=kwargs,
    )
    assert {u.ranks[next(iter(u.ranks))] for u in probe.uploads} >= {1, 2}  # heterogeneous
    for name, factors in module.lora_layers.items():
        scaling = float(factors.layer.scaling["default"])  # alpha / max_rank
        merged = (base_weight(factors).double() - probe.before[name].double()).numpy()
        oracle = scaling * _closed_form(probe.uploads, name, module.max_rank)
        np.testing.assert_allclose(merged, oracle, rtol=1e-4, atol=1e-6)
        # the adapter restarts: B zero, A a fresh draw
        assert not module.global_adapter[f"{name}.lora_B"].any()
        assert not torch.equal(
            module.global_adapter[f"{name}.lora_A"], probe.start[f"{name}.lora_A"]
        )
    # each client sends its own rank, r_k (d_in + d_out) values per module (8-bit on the link)
    widths = sum(sum(f.lora_A.shape[1:]) + f.lora_B.shape[0] for f in module.lora_layers.values())
    values = [u.ranks[next(iter(u.ranks))] * widths for u in probe.uploads]
    assert [u.num_values() for u in probe.uploads] == values
    assert trainer.logged_metrics["channel/agg_nmse"] > 0  # the received factors, quantised
    # every client of the round downloads the stacked modules: their sizes x 32 bits
    stacked = 0
    for name in module.lora_layers:
        factors = [
            (
                u.tensors[f"{name}.lora_B"][:, : u.ranks[name]],
                u.tensors[f"{name}.lora_A"][: u.ranks[name]],
            )
            for u in probe.uploads
        ]
        b, a = stack_factors(factors, [u.weight for u in probe.uploads])
        stacked += b.numel() + a.numel()
    download = trainer.logged_metrics["comm/adapter_download_bits"]
    assert float(download) == 32.0 * stacked * len(probe.uploads)
    assert module.perplexity_history[-1] < module.perplexity_history[0]
    # the export, loaded on the original base model, is the trained model
    exported = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_llama_dir), module.exported_adapter_dir
    ).eval()
    ids = torch.randint(3, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    module.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            exported(input_ids=ids).logits, module.model(input_ids=ids).logits, rtol=1e-4, atol=1e-4
        )


def test_flora_resume_after_a_round_matches_an_uninterrupted_run(
    tmp_path, tiny_llama_dir, tokenizer
):
    runs = {}
    for name, epochs, ckpt in (("full", 3, None), ("cut", 1, None), ("cut", 3, "last")):
        if ckpt == "last":
            callback = runs["cut"][0].checkpoint_callback
            ckpt = callback.last_model_path or callback.best_model_path
        kwargs = {"aggregator": FLoRA(), "client_ranks": CLIENT_RANKS}
        runs[name] = tiny_fit(
            tmp_path / name, tiny_llama_dir, tokenizer, epochs, module_kwargs=kwargs, ckpt_path=ckpt
        )
    full, resumed = runs["full"][1], runs["cut"][1]
    for name in full.lora_layers:
        torch.testing.assert_close(
            base_weight(resumed.lora_layers[name]), base_weight(full.lora_layers[name])
        )
    for name, tensor in full.global_adapter.items():
        torch.testing.assert_close(resumed.global_adapter[name], tensor)
    assert resumed.ledger.total_bits == full.ledger.total_bits
    assert resumed.ledger.total_download_bits == full.ledger.total_download_bits > 0
    assert resumed.perplexity_history == full.perplexity_history
