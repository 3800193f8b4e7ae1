"""Per-tier memory accounting against analytic counts on tiny models."""

import pytest
import torch

from lit_airlora.lora.config import LoRASettings, wrap_lora
from lit_airlora.split.cutting import tier_specs
from lit_airlora.split.memory import (
    SavedTensorMeter,
    measure_tier,
    tier_frozen_tensors,
    tier_runner,
)
from lit_airlora.split.tiers import DecoderParts

H, FFN, V, L, KV, HEAD = 32, 64, 97, 4, 2, 8  # widths, vocab, blocks, kv heads, head dim
RANK = 4


def test_meter_counts_saved_activations_exactly():
    """Linear(d->h) saves its input, ReLU its output, Linear(h->1) the same output (counted
    once): 4 B (d + h) bytes per stream; three live streams hold three times that."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 24), torch.nn.ReLU(), torch.nn.Linear(24, 1))
    meter = SavedTensorMeter(exclude=list(net.parameters()))
    with meter:
        outs = [net(torch.randn(5, 16)).sum() for _ in range(3)]
    assert meter.peak == 3 * 4 * 5 * (16 + 24)
    for out in outs:
        out.backward()
    del outs
    assert meter.current == 0


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=V,
        hidden_size=H,
        intermediate_size=FFN,
        num_hidden_layers=L,
        num_attention_heads=4,
        num_key_value_heads=KV,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    model = wrap_lora(LlamaForCausalLM(config), LoRASettings(max_rank=RANK))
    return DecoderParts.of(model), model


def _block_params() -> int:
    attention = 2 * H * H + 2 * H * KV * HEAD  # q, o and k, v
    return attention + 3 * H * FFN + 2 * H  # gate, up, down and two RMSNorms


@pytest.mark.parametrize(
    ("tier", "blocks", "extra"),
    [
        ("user", 1, V * H),  # embeddings
        ("edge", 2, 0),
        ("cloud", 1, H + V * H),  # final norm and the (tied: a second copy at the cloud) head
    ],
)
def test_tier_accounting_matches_analytic_count(tier, blocks, extra):
    parts, model = _tiny_llama()
    spec = next(s for s in tier_specs((1, 3), L) if s.name == tier)
    adapter = [
        p
        for n, p in model.named_parameters()
        if "lora_" in n and any(f"layers.{b}." in n for b in range(spec.start, spec.end))
    ]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V, (2, 8), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    memory = measure_tier(
        tier,
        tier_frozen_tensors(parts, spec),
        adapter,
        tier_runner(parts, spec, batch, g),
        streams=3,
        exclude=list(model.parameters()),
    )
    rotary = 2 * (HEAD // 2)  # the rotary inv_freq and original_inv_freq buffers (float32)
    assert memory.frozen_bytes == 4 * (blocks * _block_params() + extra + rotary)
    lora = blocks * RANK * ((H + H) + (H + KV * HEAD))  # q_proj and v_proj: r (d_in + d_out)
    assert memory.adapter_bytes == memory.gradient_bytes == 4 * lora
    assert memory.optimizer_bytes == 2 * 4 * lora + 4 * len(adapter)  # exp_avg, exp_avg_sq, step
    assert memory.activation_bytes_per_stream > 0
    assert memory.activation_bytes == 3 * memory.activation_bytes_per_stream
