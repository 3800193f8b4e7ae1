"""LMMSE equalisation against Sionna's ``lmmse_equalizer`` and the SISO zero-forcing form."""

from __future__ import annotations

import torch

from lit_airlora.channel.equalization import lmmse_equalize, post_equalization_sinr


def _complex(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(seed))


def test_matches_sionna_lmmse_equalizer():
    from sionna.phy.mimo import lmmse_equalizer

    h, y, no = _complex(5, 4, 2, seed=0), _complex(5, 4, seed=1), 0.3
    s = no * torch.eye(4, dtype=torch.complex64).expand(5, 4, 4)
    x_ref, no_ref = lmmse_equalizer(y, h, s, whiten_interference=False)
    x_hat, no_eff = lmmse_equalize(y, h, no)
    torch.testing.assert_close(x_hat, x_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(no_eff, no_ref.float(), rtol=1e-4, atol=1e-4)


def test_single_antenna_is_zero_forcing():
    h, y, no = _complex(6, 1, 1, seed=2), _complex(6, 1, seed=3), 0.1
    x_hat, no_eff = lmmse_equalize(y, h, no)
    torch.testing.assert_close(x_hat[:, 0], y[:, 0] / h[:, 0, 0], rtol=1e-5, atol=1e-5)
    gain = h[:, 0, 0].abs() ** 2
    torch.testing.assert_close(no_eff[:, 0], no / gain, rtol=1e-5, atol=1e-6)
    sinr = post_equalization_sinr(h, no)[:, 0]
    torch.testing.assert_close(sinr, gain.double() / no, rtol=1e-6, atol=0)


def test_broadcasts_one_channel_over_many_uses():
    h, y = _complex(3, 2, 2, seed=4), _complex(7, 3, 2, seed=5)  # (F, R, T), (U, F, R)
    x_hat, no_eff = lmmse_equalize(y, h, 0.05)
    assert x_hat.shape == (7, 3, 2) and no_eff.shape == (7, 3, 2)
    x_one, _ = lmmse_equalize(y[4], h, 0.05)
    torch.testing.assert_close(x_hat[4], x_one)
