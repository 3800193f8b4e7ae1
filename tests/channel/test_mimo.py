"""Multi-stream MIMO AirComp: zero forcing, power budgets, and MSE = sigma^2 ||A||_F^2."""

from __future__ import annotations

import math

import torch

from lit_airlora.channel.aircomp import estimate, receiver_noise, superpose
from lit_airlora.channel.beamforming import MatchedFilterBeamformer
from lit_airlora.channel.mimo import mimo_plan, stream_traces, zf_precoders
from lit_airlora.channel.normalise import to_symbols

C128 = torch.complex128
K, M, NR, NT, S = 4, 3, 4, 2, 2


def _setup(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn((K, M, NR, NT), dtype=C128, generator=g) * 2.0
    w = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    combiner = MatchedFilterBeamformer()(h, w**2, S, g)
    return h, w, combiner


def test_zero_forcing_cancels_misalignment():
    h, w, combiner = _setup()
    f = zf_precoders(h, combiner, w)  # (K, M, N_t, S)
    effective = combiner.mH.unsqueeze(0) @ h @ f  # (K, M, S, S)
    eye = torch.eye(S, dtype=C128).expand(K, M, S, S)
    torch.testing.assert_close(effective, w[:, None, None, None].to(C128) * eye)


def test_power_budgets_hold_with_equality_for_the_limiting_client():
    h, w, combiner = _setup(1)
    plan = mimo_plan(h, w, torch.ones(K, dtype=torch.bool), combiner)
    power = plan.precoders.abs().pow(2).sum((-2, -1))  # (K, M): tr(F F^H)
    assert torch.all(power <= 1.0 + 1e-9)
    torch.testing.assert_close(power.amax(dim=0), torch.ones(M, dtype=torch.float64))
    torch.testing.assert_close(plan.eta, 1.0 / plan.combiner.abs().pow(2).sum((1, 2)))


def test_monte_carlo_mse_matches_sigma2_frobenius_norm():
    # 20,000 symbol vectors per subcarrier: relative std of the MSE ~1%; allow 4%.
    h, w, combiner = _setup(2)
    plan = mimo_plan(h, w, torch.ones(K, dtype=torch.bool), combiner)
    g = torch.Generator().manual_seed(3)
    num_values = 2 * S * M * 20_000
    z = torch.randn((K, num_values), dtype=torch.float64, generator=g)
    symbols = torch.stack([to_symbols(zk, M, S) for zk in z])  # (K, T, M, S)
    y = superpose(plan, torch.arange(K), symbols)
    y = y + receiver_noise(tuple(y.shape), g)
    error = estimate(plan, y) - (w[:, None, None, None] * symbols).sum(0)  # (T, M, S)
    mse_per_use = error.abs().pow(2).sum(-1).mean(0)  # (M,): summed over streams
    expected = plan.combiner.abs().pow(2).sum((1, 2))  # sigma^2 ||A_m||_F^2, sigma^2 = 1
    for m in range(M):
        assert math.isclose(float(mse_per_use[m]), float(expected[m]), rel_tol=0.04)


def test_singular_projection_gives_infinite_trace_and_drops_the_client():
    h, w, combiner = _setup(4)
    h = h.clone()
    h[0] = 0  # no channel at all
    assert torch.isinf(stream_traces(h, combiner)[0]).all()
    plan = mimo_plan(h, w, torch.ones(K, dtype=torch.bool), combiner)
    assert plan.participating.tolist() == [False, True, True, True]
    assert torch.isfinite(plan.precoders).all() and torch.isfinite(plan.combiner).all()
