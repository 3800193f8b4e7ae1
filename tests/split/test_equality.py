"""With ideal links the three-tier split computes the unsplit model's loss and LoRA gradients.

Tolerance: float32, loss to rtol 1e-6 and every LoRA gradient to rtol 1e-5 / atol 1e-7 (the
tiers run the same kernels in the same order; only the mask/rotary rebuild is repeated).
"""

import pytest
import torch

from lit_airlora.lora.config import LoRASettings, wrap_lora
from lit_airlora.lora.layers import find_lora_layers
from lit_airlora.split.cutting import check_cut_points, tier_specs
from lit_airlora.split.links import IdealLink
from lit_airlora.split.step import Hop, split_step
from lit_airlora.split.tiers import DecoderParts


def _tiny(model_type: str, num_layers: int = 4):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = wrap_lora(
        AutoModelForCausalLM.from_config(config),
        LoRASettings(target_modules=["q_proj", "v_proj", "down_proj"], max_rank=4),
    )
    for factors in find_lora_layers(model).values():  # peft starts B at 0: make A's grads live
        torch.nn.init.normal_(factors.lora_B, std=0.1)
    return model


def _batch():
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, 97, (3, 12), generator=g)
    mask = torch.ones_like(input_ids)
    mask[1, 9:] = 0  # a padded row
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "labels": input_ids.masked_fill(mask == 0, -100),
    }


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2", "qwen3"])
def test_ideal_split_matches_unsplit(model_type):
    model, batch = _tiny(model_type), _batch()
    loss = model(**batch).loss
    loss.backward()
    expected = _grads(model)
    model.zero_grad(set_to_none=True)

    parts = DecoderParts.of(model)
    specs = tier_specs(check_cut_points([1, 3], parts.num_layers), parts.num_layers)
    hops = [Hop("access", IdealLink(), IdealLink()), Hop("backhaul", IdealLink(), IdealLink())]
    gens = [(torch.Generator(), torch.Generator())] * 2
    stats = split_step(parts, specs, hops, batch, gens)

    assert stats.loss == pytest.approx(float(loss), rel=1e-6)
    got = _grads(model)
    assert got.keys() == expected.keys() and len(got) == 3 * 4 * 2
    for name, grad in expected.items():
        assert grad.abs().sum() > 0, name  # a check that could fail: every factor has a gradient
        torch.testing.assert_close(got[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    assert stats.traffic["access/activation"]["bits"] == 32 * 3 * 12 * 32
