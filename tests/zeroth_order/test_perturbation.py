"""Seeded directions: the two-point estimate is unbiased, evaluation restores theta bit for bit,
and every caller regenerates the same direction from the round seed."""

import math

import pytest
import torch
from torch import nn

from lit_airlora.channel.seeding import derive_seed
from lit_airlora.zeroth_order import perturbation
from lit_airlora.zeroth_order.perturbation import (
    add_direction_,
    add_gaussian_,
    add_gaussian_product_,
    add_gaussian_rows_,
    direction,
    direction_seed,
    perturbed,
    projected_gradient,
)


def test_estimator_is_unbiased_on_a_quadratic():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(5, 5, generator=g, dtype=torch.float64)
    A, b = m @ m.T / 5 + torch.eye(5, dtype=torch.float64), torch.randn(5, generator=g).double()
    theta, mu, n = torch.randn(5, generator=g, dtype=torch.float64), 1e-3, 4000

    def f(x):
        return 0.5 * x @ A @ x + b @ x

    total = torch.zeros(5, dtype=torch.float64)
    for s in range(n):
        (z,) = direction([theta], direction_seed(7, s))
        total += projected_gradient(f(theta + mu * z), f(theta - mu * z), mu) * z
    grad = A @ theta + b
    # E[g z] = grad; Var[(g z)_i] = ||grad||^2 + grad_i^2 for g = z^T grad (exact on a quadratic).
    std_error = ((grad.pow(2).sum() + grad.pow(2)) / n).sqrt()
    assert ((total / n - grad).abs() <= 4 * std_error).all()  # 4 standard errors per entry


def test_evaluation_restores_every_parameter_bit_exactly(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    params = list(model.parameters())
    original = [p.detach().clone() for p in params]
    ids = torch.arange(2, 34).view(2, 16)
    seed, mu = direction_seed(3, 0), 1e-3
    with torch.inference_mode():
        with perturbed(model, params, seed, mu):
            inside = model(input_ids=ids, labels=ids).loss
        with perturbed(model, params, seed, -2 * mu):
            model(input_ids=ids, labels=ids)
        with perturbed(model, params, seed, mu):
            model(input_ids=ids, labels=ids)
    assert all(torch.equal(p, o) for p, o in zip(params, original, strict=True))
    # Inside the block the model really is theta + mu z (z regenerated in place here).
    add_direction_(params, seed, mu)
    with torch.inference_mode():
        moved = model(input_ids=ids, labels=ids).loss
    assert torch.allclose(inside, moved, rtol=0, atol=1e-6)
    # Why hooks: in-place +mu z, -2 mu z, +mu z in float32 does not give theta back.
    add_direction_(params, seed, -2 * mu)
    add_direction_(params, seed, mu)
    assert not all(torch.equal(p, o) for p, o in zip(params, original, strict=True))


def test_direction_depends_only_on_the_seed():
    shapes = [(3, 4), (1 << 20) + 5, (7,)]  # one parameter spans two generator chunks
    params = [torch.zeros(s) for s in shapes]
    first, again = (
        direction(params, direction_seed(11, 2)),
        direction(params, direction_seed(11, 2)),
    )
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    other = direction(params, direction_seed(11, 3))
    assert not torch.equal(first[0], other[0])
    flat = torch.cat([t.reshape(-1) for t in first])
    assert flat.mean().abs() < 5 / math.sqrt(flat.numel()) and abs(flat.std() - 1) < 0.01


def test_unused_parameter_is_reported():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    block = perturbed(model, list(model.parameters()), 0, 1e-3)
    with pytest.raises(RuntimeError, match="not used by a forward pass"), block:
        model[0](torch.ones(1, 2))


def test_rows_of_a_direction_are_the_rows_of_the_whole_direction(monkeypatch):
    # An embedding lookup perturbs only its rows; chunks of 37 values cut rows of 8 mid-way.
    monkeypatch.setattr(perturbation, "CHUNK", 37)
    table = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    rows = torch.tensor([0, 3, 4, 20, 49])
    whole, part = table.clone(), table.clone()
    add_gaussian_(whole, 11, 0.5)
    add_gaussian_rows_(part, 11, 0.5, rows)
    torch.testing.assert_close(part[rows], whole[rows], rtol=0, atol=1e-6)  # FMA or not
    others = torch.ones(50, dtype=torch.bool)
    others[rows] = False
    assert torch.equal(part[others], table[others]) and not torch.equal(part[rows], table[rows])


def test_a_product_with_a_direction_uses_the_whole_direction(monkeypatch):
    # Chunks of 37 values cut rows of 8 mid-way; every column's dot product comes in pieces.
    monkeypatch.setattr(perturbation, "CHUNK", 37)
    x = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(2))
    (z,) = direction([torch.zeros(50, 8)], 11)
    out = torch.ones(3, 5, 50)
    add_gaussian_product_(out, x, torch.Size([50, 8]), derive_seed(11, 0), 0.5)
    torch.testing.assert_close(out, 1 + 0.5 * x @ z.T, rtol=0, atol=1e-5)


def test_output_layer_is_perturbed_on_its_output_side_with_the_same_direction(monkeypatch):
    """The tied output matrix is never written or copied (no pre-hook), the logits are those of
    theta + mu z within float rounding, and theta is restored bit for bit."""
    from transformers import LlamaConfig, LlamaForCausalLM

    monkeypatch.setattr(perturbation, "CHUNK", 37)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    params = list(model.parameters())
    original = [p.detach().clone() for p in params]
    ids, seed, mu = torch.arange(1, 25).view(2, 12), direction_seed(5, 0), 0.5
    with torch.inference_mode():
        plain = model(input_ids=ids).logits
        with perturbed(model, params, seed, mu):
            assert not model.lm_head._forward_pre_hooks and model.lm_head._forward_hooks
            inside = model(input_ids=ids).logits
    assert all(torch.equal(p, o) for p, o in zip(params, original, strict=True))
    add_direction_(params, seed, mu)
    with torch.inference_mode():
        moved = model(input_ids=ids).logits
    assert (inside - plain).abs().max() > 0.1  # the head's perturbation is really there
    torch.testing.assert_close(inside, moved, rtol=0, atol=1e-5)
