"""dB and linear scale through Sionna's own conversions, in the input's precision.

Sionna's ``db_to_lin`` / ``lin_to_db`` take a precision and a device; these pick them from the
input (a Python number: float64 on the CPU; a tensor: its own float precision and device), so
callers keep the dtype they had. Sionna is imported on first use (it costs seconds).
"""

from __future__ import annotations

import torch
from torch import Tensor


def db_to_lin(x_db: Tensor | float) -> Tensor:
    """``10^(x / 10)`` (a power ratio)."""
    from sionna.phy.utils import db_to_lin as sionna_db_to_lin

    return sionna_db_to_lin(x_db, precision=_precision(x_db), device=_device(x_db))


def lin_to_db(x: Tensor | float) -> Tensor:
    """``10 log10(x)`` (of a power ratio)."""
    from sionna.phy.utils import lin_to_db as sionna_lin_to_db

    return sionna_lin_to_db(x, precision=_precision(x), device=_device(x))


def db_to_amplitude(x_db: Tensor | float) -> Tensor:
    """``10^(x / 20)``: the amplitude gain of a power ratio given in dB."""
    return db_to_lin(x_db).sqrt()


def _precision(x: Tensor | float) -> str:
    single = isinstance(x, Tensor) and x.dtype in (torch.float32, torch.float16, torch.bfloat16)
    return "single" if single else "double"


def _device(x: Tensor | float) -> torch.device | str:
    return x.device if isinstance(x, Tensor) else "cpu"
