"""Rank masks: a max-rank adapter masked to rank r behaves as a peft rank-r adapter."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from lit_airlora.lora.config import LoRASettings, wrap_lora
from lit_airlora.lora.layers import adapter_tensors, find_lora_layers
from lit_airlora.lora.masks import RankMasks, component_importance, rotate_to_svd

MAX_RANK, RANK = 8, 3


def _masked_and_reference(tiny_llama_dir):
    torch.manual_seed(1)
    masked = wrap_lora(
        AutoModelForCausalLM.from_pretrained(tiny_llama_dir), LoRASettings(max_rank=MAX_RANK)
    )
    layers = find_lora_layers(masked)
    for factors in layers.values():  # non-zero B so the adapter matters
        torch.nn.init.normal_(factors.lora_B, std=0.1)
    masks = RankMasks(masked, rank=RANK)
    config = LoraConfig(r=RANK, lora_alpha=16.0, target_modules=["q_proj", "v_proj"])
    reference = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), config)
    ref_layers = find_lora_layers(reference)
    with torch.no_grad():
        for name, factors in layers.items():
            ref_layers[name].lora_A.copy_(factors.lora_A[:RANK])
            ref_layers[name].lora_B.copy_(factors.lora_B[:, :RANK])
    return masked, masks, reference


def test_masked_outputs_and_gradients_match_rank_r_adapter(tiny_llama_dir):
    masked, _, reference = _masked_and_reference(tiny_llama_dir)
    ids = torch.randint(3, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    out_masked = masked(input_ids=ids, labels=ids)
    out_ref = reference(input_ids=ids, labels=ids)
    torch.testing.assert_close(out_masked.logits, out_ref.logits, rtol=1e-5, atol=1e-5)
    out_masked.loss.backward()
    out_ref.loss.backward()
    ref_layers = find_lora_layers(reference)
    for name, factors in find_lora_layers(masked).items():
        grad_a, grad_b = factors.lora_A.grad, factors.lora_B.grad
        torch.testing.assert_close(
            grad_a[:RANK], ref_layers[name].lora_A.grad, atol=1e-6, rtol=1e-5
        )
        torch.testing.assert_close(
            grad_b[:, :RANK], ref_layers[name].lora_B.grad, atol=1e-6, rtol=1e-5
        )
        assert grad_a[RANK:].abs().max() == 0 and grad_b[:, RANK:].abs().max() == 0


@pytest.mark.parametrize("truncate", ["importance", "svd", "prefix"])
def test_truncation_keeps_the_kept_components_and_zeroes_the_rest(tiny_llama_dir, truncate):
    masked, masks, _ = _masked_and_reference(tiny_llama_dir)
    ids = torch.randint(3, 300, (1, 8), generator=torch.Generator().manual_seed(0))
    masks.set_ranks(dict.fromkeys(masks.layers, MAX_RANK), truncate="none")
    before = copy.deepcopy(adapter_tensors(masks.layers))
    masks.set_ranks(dict.fromkeys(masks.layers, 2), truncate=truncate)
    for name, factors in masks.layers.items():
        assert factors.lora_B[:, 2:].abs().max() == 0
        scaled_old = before[f"{name}.lora_B"] / MAX_RANK
        if truncate == "prefix":  # delta W of the first two components is unchanged
            torch.testing.assert_close(
                factors.lora_B[:, :2] / 2 @ factors.lora_A[:2],
                scaled_old[:, :2] @ before[f"{name}.lora_A"][:2],
            )
    assert torch.isfinite(masked(input_ids=ids).logits).all()


def test_svd_truncation_is_the_best_rank_r_approximation(tiny_llama_dir):
    _, masks, _ = _masked_and_reference(tiny_llama_dir)
    masks.set_ranks(dict.fromkeys(masks.layers, MAX_RANK), truncate="none")
    name, factors = next(iter(masks.layers.items()))
    delta = (factors.lora_B @ factors.lora_A).detach() / MAX_RANK
    singular = torch.linalg.svdvals(delta)
    masks.set_ranks({name: 2}, truncate="svd")
    kept = (factors.lora_B[:, :2] @ factors.lora_A[:2]).detach() / 2
    error = torch.linalg.matrix_norm(delta - kept) ** 2
    torch.testing.assert_close(error, singular[2:].pow(2).sum(), rtol=1e-4, atol=1e-7)


def test_svd_truncation_of_a_fresh_adapter_keeps_it_trainable(tiny_llama_dir):
    """B = 0 (a fresh adapter, before any round): an SVD of the zero update once zeroed A too,
    after which neither factor ever had a gradient."""
    torch.manual_seed(1)
    model = wrap_lora(
        AutoModelForCausalLM.from_pretrained(tiny_llama_dir), LoRASettings(max_rank=MAX_RANK)
    )
    masks = RankMasks(model)
    masks.set_ranks(dict.fromkeys(masks.layers, 2), truncate="svd")
    ids = torch.randint(3, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    for factors in masks.layers.values():
        assert factors.lora_B.abs().max() == 0  # the update B A is still zero
        assert factors.lora_A[:2].norm(dim=1).min() > 0.1
        assert factors.lora_B.grad[:, :2].abs().max() > 0


def test_svd_rotation_of_a_rank_deficient_update_keeps_it_and_every_a_row():
    generator = torch.Generator().manual_seed(0)
    A, B = torch.randn(6, 10, generator=generator), torch.randn(9, 6, generator=generator)
    B[:, 4:] = 0  # B A has rank 4
    delta = B @ A
    rotate_to_svd(A, B, 6)
    torch.testing.assert_close(B @ A, delta, rtol=1e-4, atol=1e-5)
    assert A.norm(dim=1).min() > 0.1  # the two zero-singular-value components can still train
    assert B[:, 4:].abs().max() == 0


def test_importance_orders_components():
    a = torch.diag(torch.tensor([1.0, 3.0, 2.0]))
    b = torch.eye(3)
    assert torch.argsort(component_importance(a, b), descending=True).tolist() == [1, 2, 0]


def test_out_of_range_rank_and_unknown_module_are_rejected(tiny_llama_dir):
    _, masks, _ = _masked_and_reference(tiny_llama_dir)
    name = next(iter(masks.layers))
    with pytest.raises(ValueError, match=r"must be in \[1, max_rank=8\]"):
        masks.set_ranks({name: 9})
    with pytest.raises(ValueError, match="Unknown LoRA modules"):
        masks.set_ranks({"nope": 1})
