"""SVD-form adapters: the orthogonality penalty against its closed form, rank masking and
truncation, export as plain LoRA, and federated rounds that send e with P and Q."""

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from lit_airlora.lora.config import LoRASettings
from lit_airlora.lora.layers import LoraFactors
from lit_airlora.lora.svd_form import orthogonality_penalty
from tests.helpers import tiny_fit, tiny_module


class _Factors:
    """Stand-in for :class:`LoraFactors` holding plain tensors."""

    def __init__(self, A, B):
        self.lora_A, self.lora_B = A, B


def test_penalty_matches_its_closed_form_over_active_ranks():
    P = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])  # P^T P = diag(1, 4)
    Q = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # Q Q^T = diag(2, 1)
    layers = {"m": _Factors(Q, P)}
    # rank 2: ||diag(0, 3)||^2 + ||diag(1, 0)||^2 = 9 + 1; rank 1: (1 - 1)^2 + (2 - 1)^2 = 1.
    assert float(orthogonality_penalty(layers, {"m": 2})) == pytest.approx(10.0)
    assert float(orthogonality_penalty(layers, {"m": 1})) == pytest.approx(1.0)


def _random_singular_values(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for factors in module.lora_layers.values():
            factors.lora_E.copy_(torch.randn(factors.max_rank, generator=g))
    module.global_adapter = module.read_adapter()


def _delta(factors: LoraFactors, rank: int) -> torch.Tensor:
    B, A, e = factors.lora_B[:, :rank], factors.lora_A[:rank], factors.lora_E[:rank]
    return (B * e) @ A / rank  # alpha / r up to the common alpha


@pytest.mark.parametrize("truncate", ["importance", "svd"])
def test_masked_svd_form_exports_as_plain_lora_with_the_same_outputs(
    tmp_path, tiny_llama_dir, truncate
):
    torch.manual_seed(0)
    module = tiny_module(tiny_llama_dir, lora=LoRASettings(max_rank=4, svd_form=True))
    _random_singular_values(module)
    name = "model.layers.0.self_attn.q_proj"
    full = _delta(module.lora_layers[name], 4).clone()
    module.set_ranks(2, truncate=truncate)
    kept = _delta(module.lora_layers[name], 2)  # alpha / 2 on the rescaled e
    if truncate == "svd":  # the best rank-2 approximation (Eckart-Young)
        u, s, vh = torch.linalg.svd(full)
        torch.testing.assert_close(kept, (u[:, :2] * s[:2]) @ vh[:2], atol=1e-5, rtol=1e-4)
        factors = module.lora_layers[name]
        torch.testing.assert_close(factors.lora_B[:, :2].T @ factors.lora_B[:, :2], torch.eye(2))
    module.export_adapter(tmp_path / "adapter")
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    exported = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    ids = torch.randint(3, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    module.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            exported(input_ids=ids).logits, module.model(input_ids=ids).logits
        )


def test_federated_rounds_send_e_with_p_and_q(tmp_path, tiny_llama_dir, tokenizer):
    lora = LoRASettings(max_rank=4, svd_form=True)
    trainer, module = tiny_fit(
        tmp_path, tiny_llama_dir, tokenizer, max_epochs=1, module_kwargs={"lora": lora}
    )
    # q 64->64 and v 64->32 at rank 4 in 2 layers: P, Q and e, float32, per client.
    per_client = 32 * 2 * (4 * ((64 + 64) + (64 + 32)) + 2 * 4)
    assert trainer.logged_metrics["comm/uplink_bits_per_client"] == per_client
    e = module.global_adapter["model.layers.0.self_attn.q_proj.lora_E"]
    assert e.abs().sum() > 0  # e started at zero and was trained and averaged


def test_round_train_loss_is_the_task_loss_without_the_penalty(tmp_path, tiny_llama_dir, tokenizer):
    """The penalty shapes the gradient, not ``round/train_loss`` (the rank policies' reward):
    the first round's first-step losses agree whatever the penalty weight."""
    losses = []
    for weight in (0.0, 100.0):
        lora = LoRASettings(max_rank=4, svd_form=True, orth_reg_weight=weight)
        trainer, _ = tiny_fit(
            tmp_path / str(weight),
            tiny_llama_dir,
            tokenizer,
            max_epochs=1,
            module_kwargs={"lora": lora},
            data_kwargs={"local_steps": 1, "clients_per_round": 1},
        )
        losses.append(float(trainer.logged_metrics["round/train_loss"]))
    assert losses[0] == losses[1] and 0 < losses[0] < 20
