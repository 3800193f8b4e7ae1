"""FDMA uplink latency and the bandwidth shares that equalise clients' finish times.

Client ``k`` with bandwidth share ``beta_k`` of ``W`` Hz and full-band SNR
``snr_k = p_k |h_k|^2 / (N0 W)`` has Shannon rate ``R_k = beta_k W log2(1 + snr_k / beta_k)``
(its power spread over its share) and finishes a round after ``T_k = T_k^cmp + S / R_k``. The
round lasts ``max_k T_k``; under ``sum_k beta_k <= 1`` it is shortest when all clients finish
together, at the ``T`` where ``sum_k beta_k(T) = 1``. The share a client needs for a rate ``R``
has a closed form through the Lambert W function: with ``a = R ln 2 / (W snr)`` and
``v = -W_{-1}(-a e^{-a}) / a``, ``beta = snr / (v - 1)`` (from ``ln(1 + u) = a u``,
``u = snr / beta``).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import lambertw
from torch import Tensor

from lit_airlora.channel.costs import shannon_rate_linear_bps

#: Regula falsi steps at most; the bracket is then ~1e-12 relative (it usually stops sooner).
MAX_STEPS = 60
RELATIVE_TOLERANCE = 1e-12


def fdma_rate_bps(share: Tensor, bandwidth_hz: float, snr: Tensor) -> Tensor:
    """``beta W log2(1 + snr / beta)`` in bit/s (0 for a zero share), float64."""
    share, snr = share.double(), snr.double()
    safe = share.clamp_min(1e-300)
    rate = shannon_rate_linear_bps(safe * bandwidth_hz, snr / safe)
    return torch.where(share > 0, rate, torch.zeros_like(rate))


def share_for_rate(rate_bps: Tensor, bandwidth_hz: float, snr: Tensor) -> Tensor:
    """Smallest share reaching ``rate_bps`` (``inf`` when even the whole band cannot).

    Args:
        rate_bps: Required rate, any shape broadcastable with ``snr``.
        bandwidth_hz: Total bandwidth ``W``.
        snr: Full-band SNR (linear).
    """
    share = _share_for_rate(rate_bps.double().numpy(), bandwidth_hz, snr.double().numpy())
    return torch.from_numpy(np.where(share <= 1.0, share, np.inf))


def _share_for_rate(rate_bps: np.ndarray, bandwidth_hz: float, snr: np.ndarray) -> np.ndarray:
    """Lambert-W share (may exceed 1; ``inf`` beyond the power-limited rate ``W snr / ln 2``)."""
    a = rate_bps * np.log(2.0) / (bandwidth_hz * snr)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v = -lambertw(-a * np.exp(-a), k=-1).real / a
        share = snr / (v - 1.0)
    share = np.where(a <= 0, 0.0, share)
    return np.where((a < 1.0) & np.isfinite(share), share, np.inf)


def equalise_finish_time(
    payload_bits: Tensor, compute_s: Tensor, snr: Tensor, bandwidth_hz: float
) -> tuple[Tensor, Tensor]:
    """Smallest round latency ``T`` with ``sum_k beta_k(T) <= 1``, for one or several payloads.

    ``F(T) = sum_k beta_k(T) - 1`` decreases with ``T``; it is bracketed by the time the
    slowest client needs on the whole band (``F >= 0``) and the time equal shares need
    (``F <= 0``), and solved by regula falsi with the Illinois modification. The bracket's
    upper end is returned, so the shares always fit in the band.

    Args:
        payload_bits: ``[G]`` bits each client uploads, one per candidate (e.g. per ``rho``).
        compute_s: ``[K]`` local computation time per client.
        snr: ``[K]`` full-band SNR per client (linear).
        bandwidth_hz: Total bandwidth ``W``.

    Returns:
        ``latency_s: [G]`` and ``shares: [G, K]`` (float64); every client finishes by the
        latency, and the shares of each candidate sum to at most 1.
    """
    payload = payload_bits.double().numpy()[:, None]  # (G, 1)
    compute, gain = compute_s.double().numpy()[None, :], snr.double().numpy()[None, :]  # (1, K)
    num_clients = gain.shape[1]
    whole_band = shannon_rate_linear_bps(bandwidth_hz, torch.from_numpy(gain)).numpy()
    # equal shares: each client on 1/K of the band, its power spread over it (SNR x K)
    equal_share = shannon_rate_linear_bps(
        bandwidth_hz / num_clients, torch.from_numpy(gain * num_clients)
    ).numpy()
    low = (compute + payload / whole_band).max(axis=1)  # (G,)
    high = (compute + payload / equal_share).max(axis=1)

    def excess(deadline_s: np.ndarray) -> np.ndarray:
        return _shares_by(deadline_s, payload, compute, gain, bandwidth_hz).sum(axis=1) - 1.0

    high = _illinois(excess, low, high)
    shares = _shares_by(high, payload, compute, gain, bandwidth_hz)
    return torch.from_numpy(high), torch.from_numpy(shares)


def _illinois(excess, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Upper end of the bracket of the root of a decreasing ``excess`` (vectorised)."""
    f_low, f_high = excess(low), np.minimum(excess(high), 0.0)
    last = np.zeros_like(low)  # +1: the last step moved low, -1: high
    for _ in range(MAX_STEPS):
        if np.all(high - low <= RELATIVE_TOLERANCE * high):
            break
        width, drop = high - low, f_low - f_high
        step = np.where(drop > 0, f_low / np.where(drop > 0, drop, 1.0), 0.5)
        mid = low + np.clip(step, 1e-3, 1 - 1e-3) * width  # stay strictly inside
        f_mid = excess(mid)
        moves_low = f_mid > 0
        f_high = np.where(moves_low & (last > 0), f_high / 2, f_high)  # Illinois halving
        f_low = np.where(~moves_low & (last < 0), f_low / 2, f_low)
        low, f_low = np.where(moves_low, mid, low), np.where(moves_low, f_mid, f_low)
        high, f_high = np.where(moves_low, high, mid), np.where(moves_low, f_high, f_mid)
        last = np.where(moves_low, 1.0, -1.0)
    return high


def _shares_by(deadline_s, payload, compute, snr, bandwidth_hz) -> np.ndarray:
    """``[G, K]`` shares needed to finish by ``deadline_s: [G]`` (``inf`` if impossible)."""
    airtime_s = deadline_s[:, None] - compute
    with np.errstate(divide="ignore"):
        rate = np.where(airtime_s > 0, payload / airtime_s, np.inf)
    return _share_for_rate(rate, bandwidth_hz, snr)


def finish_times_s(
    payload_bits: float, shares: Tensor, compute_s: Tensor, snr: Tensor, bandwidth_hz: float
) -> Tensor:
    """``[K]`` finish times ``T_k = T_k^cmp + S / R_k`` for given shares."""
    return compute_s.double() + payload_bits / fdma_rate_bps(shares, bandwidth_hz, snr)
