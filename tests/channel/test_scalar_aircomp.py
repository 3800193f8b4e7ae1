"""Scalar over-the-air maths: BPSK sign flips and the analog estimate's MSE against closed forms."""

import math

import pytest
import torch

from lit_airlora.channel import scalar_aircomp as air
from lit_airlora.channel.modulation_theory import qfunc


@pytest.mark.parametrize("snr_db", [0.0, 4.0, 7.0])
def test_sign_flips_under_awgn_match_q_of_sqrt_2snr(snr_db):
    # One client on an AWGN channel at full power: received scale c = sqrt(snr), unit noise.
    n = 200_000
    g = torch.Generator().manual_seed(1)
    values = torch.randn(1, n, generator=g, dtype=torch.float64)
    h = torch.tensor([10 ** (snr_db / 20)], dtype=torch.complex128)
    scale = air.inversion_scale(snr_db, max_abs=1.0)
    sent = air.signs(values)
    y, _ = air.transmit(h, sent, scale, 0.0, 1, [torch.Generator().manual_seed(2)])
    vote = air.majority_vote(air.receive(y, torch.Generator().manual_seed(3)))
    flip_rate = float((vote != sent[0]).double().mean())
    expected = float(qfunc(torch.tensor(math.sqrt(2 * 10 ** (snr_db / 10)))))
    tolerance = 5 * math.sqrt(expected * (1 - expected) / n)  # 5 binomial standard deviations
    assert abs(flip_rate - expected) <= tolerance


def test_analog_mse_matches_closed_form_with_artificial_noise():
    k, n = 4, 40_000
    g = torch.Generator().manual_seed(0)
    h = torch.randn(k, generator=g, dtype=torch.complex128) * 10  # Rayleigh, 20 dB mean
    part = air.participating(h, min_gain_db=10.0)
    values = torch.empty(k, n, dtype=torch.float64).uniform_(-2, 2, generator=g)
    scale, noise_power = air.inversion_scale(10.0, max_abs=2.0), 3.0
    gens = [torch.Generator().manual_seed(10 + i) for i in range(k)]
    kp = int(part.sum())
    y, _ = air.transmit(h[part], values[part], scale, noise_power, kp, [gens[i] for i in range(kp)])
    estimate = air.analog_estimate(air.receive(y, torch.Generator().manual_seed(5)), scale, kp)
    mse = float((estimate - values[part].mean(0)).pow(2).mean())
    theory = air.analog_mse(scale, noise_power, kp, receiver_noise=True)
    assert kp >= 2
    assert mse == pytest.approx(theory, rel=0.03)  # chi-square: 3 relative std (sqrt(2/n) = 0.7%)


def test_channel_inversion_keeps_every_participant_within_its_power_budget():
    g = torch.Generator().manual_seed(4)
    h = torch.randn(64, generator=g, dtype=torch.complex128) * 3
    part = air.participating(h, min_gain_db=0.0)
    scale = air.inversion_scale(0.0, max_abs=5.0)
    peak = (scale * 5.0 / h[part].abs()).pow(2)  # |b_k x|^2 at |x| = x_max
    assert bool((peak <= 1.0 + 1e-12).all()) and bool((~part).any())


def test_noise_multiplier_and_artificial_noise_agree():
    scale, max_abs, s = 0.3, 10.0, 4
    noise = air.artificial_noise_power(scale, max_abs, s, target_multiplier=2.5)
    z = air.noise_multiplier(scale, max_abs, s, air.SIGMA_W2 + noise)
    assert z == pytest.approx(2.5, rel=1e-12)
    assert air.artificial_noise_power(scale, max_abs, s, target_multiplier=1e-6) == 0.0


def test_transmit_energy_is_the_inverted_symbols_power_with_and_without_artificial_noise():
    # E_k = sum_s |b_k (c x_ks + a_ks)|^2 with b_k = 1 / h_k and a_ks ~ N(0, n / K).
    k, s = 3, 50_000
    g = torch.Generator().manual_seed(7)
    h = torch.tensor([2.0 + 1.0j, -3.0j, 1.5], dtype=torch.complex128)
    values = torch.empty(k, s, dtype=torch.float64).uniform_(-1, 1, generator=g)
    scale = air.inversion_scale(0.0, max_abs=1.0)
    gens = [torch.Generator().manual_seed(20 + i) for i in range(k)]
    _, energy = air.transmit(h, values, scale, 0.0, k, gens)
    exact = (scale**2 * values.pow(2).sum(1)) / h.abs().pow(2)
    torch.testing.assert_close(energy, exact, rtol=1e-12, atol=0.0)
    noise_power = 6.0
    gens = [torch.Generator().manual_seed(20 + i) for i in range(k)]
    _, noisy = air.transmit(h, values, scale, noise_power, k, gens)
    expected = exact + s * (noise_power / k) / h.abs().pow(2)
    # Chi-square-like sum of 50k terms: relative std below 1%, tolerance 3%.
    torch.testing.assert_close(noisy, expected, rtol=0.03, atol=0.0)
