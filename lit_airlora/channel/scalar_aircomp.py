"""Over-the-air aggregation of scalars (pAirZero): truncated channel inversion, artificial noise,
analog superposition and a BPSK majority vote.

Conventions (as :mod:`lit_airlora.channel.aircomp`): effective channels ``h_k = sqrt(snr_k) g_k``
with the transmit power normalised to the budget (``P = 1``) and receiver noise ``CN(0, 1)`` per
channel use. A real value rides on the in-phase component, so the noise the estimate sees has
variance ``SIGMA_W2 = 1/2`` per real.

Truncated channel inversion (Zhu, Wang and Huang, IEEE TWC 2020): a client whose power gain
``|h_k|^2`` is below ``h_min^2`` sits the round out; every other client sends ``b_k x = c / h_k x``
with ``c = sqrt(P) h_min / x_max``, so ``|b_k x| <= sqrt(P)`` for ``|x| <= x_max`` and the server
receives ``c sum_k x_k``. ``c`` does not depend on the drawn channels, hence neither does the
privacy of a round. Artificial noise: each of the ``K`` participants adds ``a_k / h_k`` with
``a_k ~ N(0, n / K)``, so the receiver sees ``N(0, n)`` on top of its own noise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lit_airlora.channel.units import db_to_lin

#: Receiver-noise variance per real dimension (``CN(0, 1)`` noise, real-valued symbols).
SIGMA_W2 = 0.5


def inversion_scale(min_gain_db: float, max_abs: float, power: float = 1.0) -> float:
    """``c = sqrt(P) h_min / x_max``: the received scaling every participant can afford."""
    return math.sqrt(power * float(db_to_lin(min_gain_db))) / max_abs


def participating(channels: Tensor, min_gain_db: float) -> Tensor:
    """``[K]`` bool: ``|h_k|^2 >= 10^(min_gain_db / 10)`` (``channels``: ``[K]`` complex)."""
    return channels.abs().pow(2) >= float(db_to_lin(min_gain_db))


def noise_multiplier(scale: float, max_abs: float, num_values: int, noise_var: float) -> float:
    """``sigma / (2 c x_max sqrt(S))``: the Gaussian mechanism of one round (see ``privacy``)."""
    return math.sqrt(noise_var) / (2.0 * scale * max_abs * math.sqrt(num_values))


def artificial_noise_power(
    scale: float, max_abs: float, num_values: int, target_multiplier: float
) -> float:
    """Artificial-noise variance ``n`` at the receiver that brings the round to
    ``target_multiplier`` (0 when the receiver noise alone is enough)."""
    required = (2.0 * scale * max_abs * math.sqrt(num_values) * target_multiplier) ** 2
    return max(0.0, required - SIGMA_W2)


def transmit(
    channels: Tensor,
    values: Tensor,
    scale: float,
    noise_power: float,
    num_participants: int,
    generators: list[torch.Generator],
) -> tuple[Tensor, Tensor]:
    """Noise-free received sum of some participants' signals: ``sum_k h_k (c x_k + a_k) / h_k``,
    and the energy each participant transmits, ``sum_s |(c x_ks + a_ks) / h_k|^2``.

    Args:
        channels: ``[K_loc]`` complex128 effective channels of the transmitting clients.
        values: ``[K_loc, S]`` float64 real values (clipped to ``x_max``).
        scale: ``c``.
        noise_power: Total artificial-noise variance ``n`` at the receiver (shared by
            ``num_participants`` clients).
        num_participants: ``K`` (participants of the round, on all ranks).
        generators: One generator per transmitting client (its artificial noise).

    Returns:
        ``[S]`` complex128, the superposition (sums over DDP ranks add up to the whole one), and
        ``[K_loc]`` float64, each client's transmit energy in units of (full power ``P`` x one
        channel use): one symbol per value, artificial noise included.
    """
    received = torch.zeros(values.shape[-1], dtype=torch.complex128, device=values.device)
    energy = torch.zeros(len(values), dtype=torch.float64, device=values.device)
    an_std = math.sqrt(noise_power / max(num_participants, 1))
    for k, (h, x, generator) in enumerate(zip(channels, values, generators, strict=True)):
        noise = an_std * torch.randn(x.shape, dtype=torch.float64, generator=generator,
                                     device=x.device)  # fmt: skip
        symbol = (scale * x + noise) / h  # (S,) complex: channel inversion
        received += h * symbol
        energy[k] = symbol.abs().pow(2).sum()
    return received, energy


def receive(received: Tensor, generator: torch.Generator | None) -> Tensor:
    """``Re(y + w)`` with ``w ~ CN(0, 1)`` per use (``generator=None``: no receiver noise)."""
    if generator is None:
        return received.real
    noise = torch.randn(received.shape, dtype=torch.complex128, generator=generator,
                        device=generator.device)  # fmt: skip
    return (received + noise.to(received.device)).real


def analog_estimate(received_real: Tensor, scale: float, num_participants: int) -> Tensor:
    """``y / (K c)``: the estimate of the mean of the participants' values."""
    return received_real / (num_participants * scale)


def analog_mse(
    scale: float, noise_power: float, num_participants: int, receiver_noise: bool
) -> float:
    """Closed-form MSE of :func:`analog_estimate` per value: ``(sigma_w^2 + n) / (K c)^2``."""
    noise = (SIGMA_W2 if receiver_noise else 0.0) + noise_power
    return noise / (num_participants * scale) ** 2


def majority_vote(received_real: Tensor) -> Tensor:
    """Sign of the received sum of signs (``+1`` on a tie at exactly zero)."""
    return torch.where(received_real >= 0, 1.0, -1.0).to(received_real.dtype)


def signs(values: Tensor) -> Tensor:
    """BPSK symbols ``sign(x)`` in ``{-1, +1}`` (``+1`` for zero)."""
    return torch.where(values >= 0, 1.0, -1.0).to(torch.float64)
