"""SOFT's near-orthogonality regulariser on LoRA factors, with its closed-form gradient."""

from __future__ import annotations

from torch import Tensor


def off_diagonal(gram: Tensor) -> Tensor:
    """``G - diag(G)`` for a square matrix."""
    return gram - gram.diagonal().diag_embed()


def orthogonality_penalty(lora_a: Tensor, lora_b: Tensor) -> Tensor:
    """``R = ||A A^T - diag(A A^T)||_F^2 + ||B^T B - diag(B^T B)||_F^2`` (a scalar tensor).

    Only off-diagonal Gram entries are penalised, so component magnitudes stay free and the
    rows ``a_i`` (columns ``b_i``) are pushed to be mutually orthogonal.

    Args:
        lora_a: ``[r, d_in]`` active rows of A.
        lora_b: ``[d_out, r]`` active columns of B.
    """
    return (
        off_diagonal(lora_a @ lora_a.T).square().sum()
        + off_diagonal(lora_b.T @ lora_b).square().sum()
    )


def orthogonality_grads(lora_a: Tensor, lora_b: Tensor) -> tuple[Tensor, Tensor]:
    """``(dR/dA, dR/dB) = (4 off(A A^T) A, 4 B off(B^T B))``, shapes of the inputs.

    From ``dR = 2 <off(G), dG>`` with ``dG = dA A^T + A dA^T`` and ``G`` symmetric.
    """
    grad_a = 4.0 * off_diagonal(lora_a @ lora_a.T) @ lora_a  # (r, d_in)
    grad_b = 4.0 * lora_b @ off_diagonal(lora_b.T @ lora_b)  # (d_out, r)
    return grad_a, grad_b
