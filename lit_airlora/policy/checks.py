"""Argument checks shared by the learned rank policies (the house message: name, value, fix)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def check_positive(name: str, value: float) -> None:
    """Raise unless ``value`` is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` ({value!r}) must be a number > 0.")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` ({value!r}) must be a finite number > 0.")


def check_int(name: str, value: int, minimum: int) -> None:
    """Raise unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` ({value!r}) must be an integer >= {minimum}.")


def check_unit_interval(name: str, value: float, closed_right: bool = False) -> None:
    """Raise unless ``0 <= value < 1`` (``<= 1`` with ``closed_right``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or value > 1 or (value == 1 and not closed_right):
        bound = "1]" if closed_right else "1)"
        raise ValueError(f"`{name}` ({value!r}) must be in [0, {bound}.")


def check_range(name: str, bounds: Sequence[float], positive: bool = False) -> None:
    """Raise unless ``bounds`` is ``(low, high)`` of finite numbers with ``low <= high``."""
    ok = (
        isinstance(bounds, Sequence)
        and len(bounds) == 2
        and all(isinstance(b, (int, float)) and math.isfinite(b) for b in bounds)
    )
    if not ok or bounds[0] > bounds[1] or (positive and bounds[0] <= 0):
        sign = "0 < " if positive else ""
        raise ValueError(
            f"`{name}` ({bounds!r}) must be two finite numbers [low, high] with {sign}low <= high."
        )


def check_betas(beta_start: float, beta_end: float) -> None:
    """Raise unless ``0 < beta_start < beta_end < 1`` (a diffusion noise schedule)."""
    for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        check_positive(name, value)
    if not beta_start < beta_end < 1:
        raise ValueError(
            f"`beta_start` ({beta_start}) and `beta_end` ({beta_end}) must satisfy "
            "0 < beta_start < beta_end < 1 (AirLLM: 1e-4 and 2e-2)."
        )
