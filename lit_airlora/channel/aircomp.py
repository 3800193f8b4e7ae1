"""Over-the-air computation (AirComp) maths: truncation, SISO channel inversion, superposition.

Conventions (all channel maths in complex128):

- Channels are *effective*: ``H_km = sqrt(snr_k) G_km`` with ``G`` the unit-power small-scale
  fading and ``snr_k`` the client's linear average SNR, so with the transmit power normalised to
  ``P_k = 1`` (a client's full power, ``tx_power_w`` watts) the receiver noise is ``CN(0, 1)``
  per antenna and channel use.
- Symbols carry unit-variance reals in pairs, ``s = (z_1 + j z_2) / sqrt(2)``, ``E|s|^2 = 1``.
  An estimate ``s_hat = s + e`` with ``E|e|^2 = v`` then has error variance ``v`` on each real
  ``z``: the MSE "per real dimension" below is that ``v``. Single antenna: ``v = 1 / eta``.

Single antenna (Zhu, Wang and Huang, "Broadband analog aggregation for low-latency federated
edge learning", IEEE TWC 2020; Yang et al., "Federated learning via over-the-air computation",
IEEE TWC 2020): client ``k`` pre-scales by ``b_k = sqrt(eta) w_k / h_k`` (channel inversion
with weight ``w_k``), unless its gain ``|g_k|^2`` is below a threshold, in which case it sits
the round out. ``eta = min_k P_k |h_k|^2 / w_k^2`` over the participants satisfies every power
budget ``|b_k|^2 <= P_k``. The server receives ``y = sqrt(eta) sum_k w_k s_k + n`` and estimates
``sum_k w_k s_k`` as ``y / sqrt(eta)``. With OFDM, each subcarrier ``m`` has its own ``eta_m``.

The general receiver used here is linear: ``y = sum_k H_k F_k s_k + n``, ``s_hat = A^H y``;
single antenna is ``F = b``, ``A = 1 / sqrt(eta)`` (see :mod:`lit_airlora.channel.mimo` for
multi-stream MIMO).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class AirCompPlan:
    """Transceivers of one round, for all clients of the round (identical on every DDP rank).

    Attributes:
        channels: ``[K, M, N_r, N_t]`` effective channels, complex128.
        precoders: ``[K, M, N_t, S]`` transmit precoders (zero for non-participants).
        combiner: ``[M, N_r, S]`` receive beamformers ``A_m`` (``s_hat = A_m^H y``).
        participating: ``[K]`` bool.
        mse_per_real: ``[M, S]`` predicted error variance of each estimated real (unit noise).
        eta: ``[M]`` power-scaling factor per subcarrier (MIMO: ``1 / ||A_m||_F^2``).
    """

    channels: Tensor
    precoders: Tensor
    combiner: Tensor
    participating: Tensor
    mse_per_real: Tensor
    eta: Tensor


def min_stream_gain(fading: Tensor, num_streams: int) -> Tensor:
    """``[K, M]``: the ``S``-th largest squared singular value of each ``G_km`` (``|g|^2`` SISO).

    Args:
        fading: ``[K, M, N_r, N_t]`` small-scale channels.
        num_streams: Streams ``S`` each client must carry.
    """
    return torch.linalg.svdvals(fading)[..., num_streams - 1] ** 2


def truncation_mask(gain: Tensor, threshold: float, weights: Tensor) -> Tensor:
    """``[K]`` bool: clients that transmit (every subcarrier gain finite, > 0 and ``>= threshold``,
    and a positive weight).

    A client sits the whole round out when any subcarrier is in a deep fade, so the estimator
    stays a weighted mean over one set of clients for every entry [assumed].
    """
    usable = torch.isfinite(gain) & (gain > 0) & (gain >= threshold)  # (K, M)
    return usable.all(dim=-1) & (weights > 0)


def siso_eta(channels: Tensor, weights: Tensor, participating: Tensor) -> Tensor:
    """``[M]``: ``eta_m = min_k |h_km|^2 / w_k^2`` over participants (power budgets ``P_k = 1``).

    Args:
        channels: ``[K, M]`` effective single-antenna channels.
        weights: ``[K]`` aggregation weights ``w_k`` (any positive scale).
        participating: ``[K]`` bool, at least one True.
    """
    ratio = channels[participating].abs() ** 2 / weights[participating, None] ** 2  # (K_p, M)
    return ratio.amin(dim=0)


def siso_precoders(channels: Tensor, weights: Tensor, eta: Tensor, participating: Tensor) -> Tensor:
    """``[K, M]``: ``b_km = sqrt(eta_m) w_k / h_km`` for participants, 0 for the others."""
    safe = torch.where(participating[:, None], channels, torch.ones_like(channels))
    b = eta.sqrt()[None, :] * weights[:, None] / safe
    return torch.where(participating[:, None], b, torch.zeros_like(b))


def siso_plan(channels: Tensor, weights: Tensor, participating: Tensor) -> AirCompPlan:
    """The single-antenna plan from ``[K, M, 1, 1]`` effective channels."""
    h = channels[..., 0, 0]  # (K, M)
    eta = siso_eta(h, weights, participating)
    b = siso_precoders(h, weights, eta, participating)
    return AirCompPlan(
        channels=channels,
        precoders=b[..., None, None],
        combiner=(1.0 / eta.sqrt()).to(channels.dtype)[:, None, None],
        participating=participating,
        mse_per_real=(1.0 / eta)[:, None],
        eta=eta,
    )


def superpose(plan: AirCompPlan, clients: Tensor, symbols: Tensor) -> Tensor:
    """Noise-free received signal of some clients: ``y = sum_k H_k F_k s_k``.

    Args:
        plan: The round's plan.
        clients: ``[K_loc]`` indices (into the round's clients) of the transmitting clients.
        symbols: ``[K_loc, T, M, S]`` their unit-energy symbols, complex128.

    Returns:
        ``[T, M, N_r]`` complex128. Sums over DDP ranks add up to the full superposition.
    """
    num_rx = plan.channels.shape[-2]
    y = torch.zeros((*symbols.shape[1:3], num_rx), dtype=torch.complex128, device=symbols.device)
    for k, s_k in zip(clients.tolist(), symbols, strict=True):
        gain = plan.channels[k] @ plan.precoders[k]  # (M, N_r, S)
        y += torch.einsum("mrs,tms->tmr", gain, s_k)
    return y


def transmit_energy(plan: AirCompPlan, clients: Tensor, symbols: Tensor) -> Tensor:
    """``[K_loc]`` transmitted energy ``sum ||F_km s||^2`` in units of (``P_k`` x channel use)."""
    energy = []
    for k, s_k in zip(clients.tolist(), symbols, strict=True):
        x = torch.einsum("mns,tms->tmn", plan.precoders[k], s_k)  # (T, M, N_t)
        energy.append(x.abs().pow(2).sum())
    return torch.stack(energy) if energy else torch.zeros(0, dtype=torch.float64)


def estimate(plan: AirCompPlan, received: Tensor) -> Tensor:
    """``s_hat = A_m^H y``: ``[T, M, N_r]`` received -> ``[T, M, S]`` estimated weighted sum."""
    return torch.einsum("mrs,tmr->tms", plan.combiner.conj(), received)


def receiver_noise(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """``CN(0, 1)`` noise of ``shape``, complex128 (unit variance per complex sample)."""
    return torch.randn(shape, dtype=torch.complex128, generator=generator, device=generator.device)
