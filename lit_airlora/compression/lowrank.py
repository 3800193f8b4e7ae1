"""Frobenius norms of low-rank products, from Gram matrices (never forming the product)."""

from __future__ import annotations

from torch import Tensor


def factored_frobenius_sq(left: Tensor, right: Tensor) -> float:
    """``||left @ right||_F^2`` as ``sum((left^T left) * (right right^T))``, in float64.

    Costs ``O(k^2 (m + n))`` instead of ``O(k m n)``: for LoRA factors the ``d_out x d_in``
    product is never formed.

    Args:
        left: ``[m, k]`` (columns ``b_i``).
        right: ``[k, n]`` (rows ``a_i^T``).
    """
    if left.shape[1] == 0:
        return 0.0
    left, right = left.double(), right.double()
    return float(((left.T @ left) * (right @ right.T)).sum())
