"""Rate and cost of digital uplinks: resources, airtime and energy (pure functions).

5G NR numerology [3GPP TS 38.211]: a slot has 14 OFDM symbols (normal cyclic prefix) and lasts
``1 ms * 15 kHz / subcarrier_spacing``; a physical resource block (PRB) has 12 subcarriers.
We allocate ``floor(bandwidth / (12 * spacing))`` PRBs to a client [assumed: no guard bands].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SUBCARRIERS_PER_PRB = 12
SYMBOLS_PER_SLOT = 14
#: Per-client airtime combined over clients: in parallel (OFDMA/FDMA) or one after the other.
AIRTIME_COMBINERS = {"ofdma": "max", "fdma": "max", "tdma": "sum"}


def slot_duration_s(subcarrier_spacing_hz: float) -> float:
    """Duration of one 14-symbol slot: 1 ms at 15 kHz, halved at every doubling of the spacing."""
    return 1e-3 * 15e3 / subcarrier_spacing_hz


def num_prbs(bandwidth_hz: float, subcarrier_spacing_hz: float) -> int:
    """Physical resource blocks that fit in ``bandwidth_hz``."""
    return int(bandwidth_hz // (SUBCARRIERS_PER_PRB * subcarrier_spacing_hz))


def resource_elements_per_slot(num_prb: int, num_data_symbols: int, num_streams: int = 1) -> int:
    """Data resource elements of one slot over all streams (the PUSCH allocation)."""
    return num_prb * SUBCARRIERS_PER_PRB * num_data_symbols * num_streams


def symbol_airtime_s(num_symbols: Tensor | float, bandwidth_hz: float) -> Tensor:
    """Airtime of complex symbols at the Nyquist rate: ``bandwidth_hz`` symbols per second."""
    return torch.as_tensor(num_symbols, dtype=torch.float64) / bandwidth_hz


def energy_j(tx_power_w: float, airtime_s: Tensor) -> Tensor:
    """Transmit energy ``P * t`` in joules."""
    return tx_power_w * airtime_s


def shannon_rate_bps(bandwidth_hz: float | Tensor, snr_db: Tensor | float) -> Tensor:
    """AWGN Shannon capacity ``B log2(1 + 10^(snr_db / 10))`` in bit/s, float64, same shape.

    The one Shannon-rate function of the package (links, costs, rank policies and, through
    :func:`shannon_rate_linear_bps`, the FDMA shares use it).
    """
    from sionna.phy.utils import db_to_lin  # lazy: Sionna costs seconds to import

    snr_db = torch.as_tensor(snr_db)
    return shannon_rate_linear_bps(bandwidth_hz, db_to_lin(snr_db, precision="double"))


def shannon_rate_linear_bps(bandwidth_hz: float | Tensor, snr: Tensor) -> Tensor:
    """``B log2(1 + snr)`` in bit/s for a linear ``snr`` (same shape, broadcast with ``B``)."""
    return bandwidth_hz * torch.log2(1.0 + snr)


def combined_airtime_s(per_client_s: Tensor, multiple_access: str) -> float:
    """Round airtime of clients sharing the uplink: max (OFDMA/FDMA) or sum (TDMA)."""
    check_multiple_access(multiple_access)
    if per_client_s.numel() == 0:
        return 0.0
    return float(getattr(per_client_s, AIRTIME_COMBINERS[multiple_access])())


def check_multiple_access(multiple_access: str) -> None:
    if multiple_access not in AIRTIME_COMBINERS:
        raise ValueError(
            f"`multiple_access` ({multiple_access!r}) must be one of {sorted(AIRTIME_COMBINERS)}."
        )


def num_blocks(payload_bits: int, bits_per_block: int) -> int:
    """Blocks needed for ``payload_bits`` (the last one zero-padded)."""
    return math.ceil(payload_bits / bits_per_block)
