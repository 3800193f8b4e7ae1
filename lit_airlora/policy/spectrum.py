"""Spectrum of a LoRA update, cheaply from its factors (QR; never forms ``B A``)."""

from __future__ import annotations

import torch
from torch import Tensor


def low_rank_singular_values(left: Tensor, right: Tensor) -> Tensor:
    """Singular values of ``left @ right`` (descending) in ``O(k^2 (d_out + d_in))``.

    Args:
        left: ``[d_out, k]`` float.
        right: ``[k, d_in]`` float.

    Returns:
        ``[min(k, d_out, d_in)]`` float32, descending.
    """
    _, r_left = torch.linalg.qr(left.double())  # (min(d_out, k), k)
    _, r_right = torch.linalg.qr(right.double().T)  # (min(d_in, k), k)
    return torch.linalg.svdvals(r_left @ r_right.T).float()


def update_spectrum(
    A0: Tensor, B0: Tensor, A1: Tensor, B1: Tensor, scale: float, length: int
) -> Tensor:
    """Singular values of the weight update ``scale (B1 A1 - B0 A0)``, as ``[length]`` float32.

    The update factors as ``[B0, B1 - B0] @ [[A1 - A0], [A1]]`` (rank <= 2r), so its spectrum
    costs two QRs of ``2r`` columns and a ``2r x 2r`` SVD. The result is cut or zero-padded to
    ``length`` (the allocated rank: a LoRA of that rank holds no more components).

    Args:
        A0: ``[r, d_in]`` factor before the update (active rows only).
        B0: ``[d_out, r]`` factor before the update (active columns only).
        A1: ``[r, d_in]`` factor after the update.
        B1: ``[d_out, r]`` factor after the update.
        scale: Scaling of ``B A`` in the adapted weight (peft's ``alpha / r`` times the mask).
        length: Number of singular values returned.
    """
    left = torch.cat([B0, B1 - B0], dim=1).float()  # (d_out, 2r)
    right = torch.cat([A1 - A0, A1], dim=0).float()  # (2r, d_in)
    values = abs(scale) * low_rank_singular_values(left, right)
    out = torch.zeros(length, dtype=torch.float32)
    count = min(length, values.numel())
    out[:count] = values[:count]
    return out


def tail_energy(spectrum: Tensor) -> Tensor:
    """``[L, R + 1]``: entry ``[l, r]`` is ``sum_{i >= r} sigma_{l,i}^2``, the energy a rank-r
    truncation of module ``l`` drops (``spectrum``: ``[L, R]`` singular values, descending).
    """
    energy = spectrum.double().square()
    tails = energy.flip(1).cumsum(1).flip(1)  # (L, R)
    return torch.cat([tails, torch.zeros_like(tails[:, :1])], dim=1)
