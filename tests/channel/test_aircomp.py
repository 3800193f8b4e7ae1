"""Single-antenna AirComp maths against closed forms and Monte-Carlo simulation."""

from __future__ import annotations

import math

import torch

from lit_airlora.channel.aircomp import (
    estimate,
    min_stream_gain,
    receiver_noise,
    siso_eta,
    siso_plan,
    superpose,
    transmit_energy,
    truncation_mask,
)
from lit_airlora.channel.mimo import mimo_plan
from lit_airlora.channel.normalise import from_symbols, to_symbols

C128 = torch.complex128


def _channels(num_clients: int, num_subcarriers: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((num_clients, num_subcarriers, 1, 1), dtype=C128, generator=g) * 3.0


def _symbols(num_clients: int, num_values: int, num_subcarriers: int = 1, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((num_clients, num_values), dtype=torch.float64, generator=g)
    return z, torch.stack([to_symbols(zk, num_subcarriers, 1) for zk in z])


def test_eta_is_the_weakest_weighted_gain_and_meets_every_power_budget():
    h = torch.tensor([[2.0], [0.5j], [1.0 + 1.0j]], dtype=C128)
    w = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    p = torch.tensor([True, True, False])
    eta = siso_eta(h, w, p)
    assert math.isclose(float(eta), min(4.0 / 0.25, 0.25 / 0.0625))  # client 1 limits: 4.0
    plan = siso_plan(h[..., None, None], w, p)
    power = plan.precoders[..., 0, 0].abs() ** 2  # (K, M)
    assert torch.all(power <= 1.0 + 1e-12)
    assert math.isclose(float(power[1, 0]), 1.0)  # the limiting client uses its full budget
    assert float(power[2, 0]) == 0.0  # truncated clients stay silent


def test_noiseless_estimate_is_the_exact_weighted_sum():
    h = _channels(5, num_subcarriers=4)
    w = torch.rand(5, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) + 0.1
    z, symbols = _symbols(5, 64, num_subcarriers=4)
    plan = siso_plan(h, w, torch.ones(5, dtype=torch.bool))
    s_hat = estimate(plan, superpose(plan, torch.arange(5), symbols))
    torch.testing.assert_close(from_symbols(s_hat, 64), (w[:, None] * z).sum(0), rtol=0, atol=1e-12)


def test_monte_carlo_mse_matches_one_over_eta_per_real_dimension():
    # 40,000 reals: the sample variance has relative std sqrt(2 / 40000) = 0.7%; allow 3%.
    h = _channels(6, seed=3)
    w = torch.full((6,), 1 / 6, dtype=torch.float64)
    z, symbols = _symbols(6, 40_000)
    plan = siso_plan(h, w, torch.ones(6, dtype=torch.bool))
    y = superpose(plan, torch.arange(6), symbols)
    y = y + receiver_noise(tuple(y.shape), torch.Generator().manual_seed(4))
    error = from_symbols(estimate(plan, y), 40_000) - (w[:, None] * z).sum(0)
    theory = 1.0 / float(plan.eta)
    assert math.isclose(float(error.pow(2).mean()), theory, rel_tol=0.03)
    assert math.isclose(float(plan.mse_per_real), theory)


def test_energy_is_precoder_power_times_symbol_energy():
    h = _channels(2)
    plan = siso_plan(h, torch.tensor([0.5, 0.5], dtype=torch.float64), torch.ones(2, dtype=bool))
    _, symbols = _symbols(2, 10)
    energy = transmit_energy(plan, torch.arange(2), symbols)
    expected = plan.precoders[:, 0, 0, 0].abs() ** 2 * symbols.abs().pow(2).sum((1, 2, 3))
    torch.testing.assert_close(energy, expected)


def test_truncation_excludes_deep_fades_zero_weights_and_non_finite_gains():
    gain = torch.tensor([[1.0, 0.5], [1.0, 0.01], [0.0, 1.0], [float("nan"), 1.0], [1.0, 1.0]])
    weights = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])
    mask = truncation_mask(gain, 0.05, weights)
    assert mask.tolist() == [True, False, False, False, False]
    assert truncation_mask(gain, 0.0, weights)[2].item() is False  # zero gain: never inverted


def test_deep_fades_give_finite_plans():
    h = torch.tensor([[1e-30], [1.0], [0.0]], dtype=C128)[..., None, None]
    w = torch.full((3,), 1 / 3, dtype=torch.float64)
    p = truncation_mask(min_stream_gain(h, 1), 0.01, w)
    plan = siso_plan(h, w, p)
    assert p.tolist() == [False, True, False]
    assert all(torch.isfinite(t).all() for t in (plan.precoders, plan.combiner, plan.eta))


def test_single_antenna_mimo_plan_is_channel_inversion():
    h = _channels(4, num_subcarriers=3, seed=5)
    w = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    p = torch.tensor([True, True, False, True])
    siso = siso_plan(h, w, p)
    mimo = mimo_plan(h, w, p, torch.ones((3, 1, 1), dtype=C128))
    torch.testing.assert_close(mimo.eta, siso.eta)
    torch.testing.assert_close(mimo.precoders, siso.precoders)
    torch.testing.assert_close(mimo.mse_per_real, siso.mse_per_real)


def test_symbols_carry_unit_energy_and_round_trip():
    z = torch.randn(1001, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    s = to_symbols(z, num_subcarriers=8, num_streams=2)
    assert s.shape == (math.ceil(1001 / 32), 8, 2)
    torch.testing.assert_close(from_symbols(s, 1001), z)
    assert math.isclose(float(s.abs().pow(2).sum()), float(z.pow(2).sum()) / 2, rel_tol=1e-12)
