"""Linear MMSE equalisation of ``y = H x + n`` and the SINR it leaves (pure functions).

For unit-energy symbols and noise covariance ``N_0 I``, the LMMSE filter is
``G = (H^H H + N_0 I)^-1 H^H``. With ``D = diag(G H)``, the unbiased estimate
``x_hat = D^-1 G y`` sees residual noise of variance ``1 / D - 1`` per stream, i.e. a
post-equalisation SINR ``D / (1 - D)`` (Bjornson, Hoydis and Sanguinetti, "Massive MIMO
Networks", 2017, Lemma B.19; Sionna's ``lmmse_equalizer`` implements the same). For a single
antenna this is per-subcarrier zero forcing: ``x_hat = y / h`` with noise ``N_0 / |h|^2``.
The bit-level link equalises with it and the PHY abstraction maps the same SINR to BLER, so the
two fidelities see one channel.
"""

from __future__ import annotations

import torch
from torch import Tensor


def lmmse_filter(h: Tensor, no: Tensor | float) -> tuple[Tensor, Tensor]:
    """LMMSE filter and its per-stream gain.

    Args:
        h: ``[..., num_rx, num_tx]`` complex channel matrices.
        no: Noise variance per complex dimension, broadcastable to ``h.shape[:-2]``.

    Returns:
        ``g: [..., num_tx, num_rx]`` complex filter (``h``'s dtype) and
        ``gain: [..., num_tx]`` float64 ``diag(G H)`` in ``(0, 1)``.
    """
    # Small matrices per subcarrier: float64 keeps 1 - D accurate at high SNR.
    h64 = h.to(torch.complex128)
    no64 = torch.as_tensor(no, dtype=torch.float64, device=h.device)
    h_herm = h64.mH  # (..., T, R)
    eye = torch.eye(h.shape[-1], dtype=torch.complex128, device=h.device)
    gram = h_herm @ h64 + no64[..., None, None] * eye  # (..., T, T)
    g = torch.linalg.solve(gram, h_herm)  # (..., T, R)
    gain = torch.diagonal(g @ h64, dim1=-2, dim2=-1).real
    return g.to(h.dtype), gain


def lmmse_equalize(y: Tensor, h: Tensor, no: Tensor | float) -> tuple[Tensor, Tensor]:
    """Unbiased LMMSE estimates of the transmitted symbols.

    Args:
        y: ``[..., num_rx]`` complex received samples.
        h: ``[..., num_rx, num_tx]`` complex channels, broadcastable against ``y``'s batch.
        no: Noise variance per complex dimension, broadcastable to ``h.shape[:-2]``.

    Returns:
        ``x_hat: [..., num_tx]`` complex estimates and ``no_eff: [..., num_tx]`` float32
        residual noise variances (the equalised channel is ``x_hat = x + e``).
    """
    g, gain = lmmse_filter(h, no)
    x_tilde = (g @ y.unsqueeze(-1)).squeeze(-1)  # (..., T)
    x_hat = x_tilde / gain.to(x_tilde.real.dtype)
    no_eff = residual_noise(gain)
    return x_hat, no_eff.expand(x_hat.shape).to(torch.float32)


def post_equalization_sinr(h: Tensor, no: Tensor | float) -> Tensor:
    """``[..., num_tx]`` float64 SINR per stream after LMMSE equalisation, ``D / (1 - D)``."""
    return 1.0 / residual_noise(lmmse_filter(h, no)[1])


def residual_noise(gain: Tensor) -> Tensor:
    """Residual noise variance ``1 / D - 1`` of the unbiased estimate (floored to stay > 0)."""
    return (1.0 / gain - 1.0).clamp(min=1e-12)
