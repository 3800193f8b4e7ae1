"""Argument checks shared by the channel classes: messages name the argument and valid range."""

from __future__ import annotations

import math


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_finite(name: str, value: object) -> None:
    if not _is_number(value):
        raise ValueError(f"`{name}` ({value!r}) must be a finite number.")


def check_finite_list(name: str, values: list) -> None:
    if not values or not all(_is_number(v) for v in values):
        raise ValueError(
            f"`{name}` ({values!r}) must be a finite number or a non-empty list of them."
        )


def check_positive(name: str, value: object) -> None:
    if not (_is_number(value) and value > 0):
        raise ValueError(f"`{name}` ({value!r}) must be a finite number > 0.")


def check_nonnegative(name: str, value: object) -> None:
    if not (_is_number(value) and value >= 0):
        raise ValueError(f"`{name}` ({value!r}) must be a finite number >= 0.")


def check_int_at_least(name: str, value: object, minimum: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
        raise ValueError(f"`{name}` ({value!r}) must be an integer >= {minimum}.")


def check_unit_interval(name: str, value: object) -> None:
    """``value`` in ``[0, 1)`` (correlation coefficients, probabilities that must stay < 1)."""
    if not (_is_number(value) and 0 <= value < 1):
        raise ValueError(f"`{name}` ({value!r}) must be in [0, 1).")
