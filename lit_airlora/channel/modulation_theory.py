"""Closed-form bit error rates of uncoded Gray-mapped BPSK / QPSK / 16-QAM.

Every BER here is a weighted sum of Gaussian tail terms ``sum_i a_i Q(sqrt(c_i * snr))`` in the
symbol SNR ``snr = E_s / N_0`` (unit-energy constellation, complex noise of variance ``N_0``):

- BPSK: ``Q(sqrt(2 snr))``.
- QPSK (Gray): ``Q(sqrt(snr))`` per bit.
- 16-QAM (Gray): ``3/4 Q(x) + 1/2 Q(3x) - 1/4 Q(5x)`` with ``x = sqrt(snr / 5)`` (exact; Cho and
  Yoon, "On the general BER expression of one- and two-dimensional amplitude modulations",
  IEEE Trans. Commun., 2002).

Over Rayleigh fading (``h ~ CN(0, 1)``, coherent detection, mean SNR ``snr``) each term averages
in closed form: ``E[Q(sqrt(c g))] = (1 - sqrt(c snr / (2 + c snr))) / 2`` for exponential ``g``
of mean ``snr`` (Simon and Alouini, "Digital Communication over Fading Channels", eq. 5.6).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Terms ``(a_i, c_i)`` of ``BER = sum_i a_i Q(sqrt(c_i * snr))`` per bits per symbol.
BER_TERMS: dict[int, tuple[tuple[float, float], ...]] = {
    1: ((1.0, 2.0),),
    2: ((1.0, 1.0),),
    4: ((0.75, 1.0 / 5.0), (0.5, 9.0 / 5.0), (-0.25, 25.0 / 5.0)),
}


def qfunc(x: Tensor) -> Tensor:
    """Gaussian tail ``Q(x) = P(N(0, 1) > x) = erfc(x / sqrt 2) / 2``."""
    return 0.5 * torch.erfc(x / math.sqrt(2.0))


def ber_awgn(num_bits_per_symbol: int, snr_db: Tensor | float) -> Tensor:
    """Bit error rate over AWGN at symbol SNR ``snr_db`` (``E_s / N_0`` in dB), float64."""
    snr = _snr_linear(snr_db)
    return sum(a * qfunc(torch.sqrt(c * snr)) for a, c in _terms(num_bits_per_symbol))


def ber_rayleigh(num_bits_per_symbol: int, snr_db: Tensor | float) -> Tensor:
    """Bit error rate over Rayleigh fading at mean symbol SNR ``snr_db`` (dB), float64."""
    snr = _snr_linear(snr_db)
    return sum(
        a * 0.5 * (1.0 - torch.sqrt(c * snr / (2.0 + c * snr)))
        for a, c in _terms(num_bits_per_symbol)
    )


def _snr_linear(snr_db: Tensor | float) -> Tensor:
    from sionna.phy.utils import db_to_lin  # lazy: Sionna costs seconds to import

    return db_to_lin(torch.as_tensor(snr_db), precision="double")


def _terms(num_bits_per_symbol: int) -> tuple[tuple[float, float], ...]:
    if num_bits_per_symbol not in BER_TERMS:
        raise ValueError(
            f"`num_bits_per_symbol` ({num_bits_per_symbol!r}) has no closed form here: use one "
            f"of {sorted(BER_TERMS)} (BPSK, QPSK, 16-QAM)."
        )
    return BER_TERMS[num_bits_per_symbol]
