"""Aggregation maths as pure functions over named tensors (tested against numpy oracles).

Every aggregator here is linear in the uploads: it is a ratio of weighted sums, so DDP ranks
compute partial sums over their clients, all-reduce them, and divide once. Over-the-air
aggregation computes the same sums in the channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def weighted_sum(
    tensors: Sequence[Mapping[str, Tensor]], weights: Sequence[float], names: Sequence[str]
) -> dict[str, Tensor]:
    """``sum_k w_k x_k`` for every name, accumulated in float64. Empty ``tensors`` is an error."""
    if not tensors:
        raise ValueError("weighted_sum needs at least one set of tensors.")
    out = {}
    for name in names:
        acc = torch.zeros_like(tensors[0][name], dtype=_acc_dtype(tensors[0][name]))
        for tensor_set, weight in zip(tensors, weights, strict=True):
            acc.add_(tensor_set[name].to(acc.dtype), alpha=float(weight))
        out[name] = acc
    return out


def weighted_mean(
    tensors: Sequence[Mapping[str, Tensor]], weights: Sequence[float], names: Sequence[str]
) -> dict[str, Tensor]:
    """FedAvg: ``sum_k w_k x_k / sum_k w_k``; entries a client did not send count as zero."""
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"Aggregation weights must sum to a positive value, got {total}.")
    return {n: t / total for n, t in weighted_sum(tensors, weights, names).items()}


def masked_weighted_mean(
    tensors: Sequence[Mapping[str, Tensor]],
    masks: Sequence[Mapping[str, Tensor]],
    weights: Sequence[float],
    names: Sequence[str],
) -> dict[str, Tensor]:
    """HeteroFL-style zero padding: each entry averaged over the clients that sent it.

    ``out[i] = sum_k w_k m_k[i] x_k[i] / sum_k w_k m_k[i]`` (0 where no client sent entry i).
    """
    numerator = weighted_sum(tensors, weights, names)
    mask_sets = [{n: m[n].to(torch.float64) for n in names} for m in masks]
    denominator = weighted_sum(mask_sets, weights, names)
    return {n: safe_divide(numerator[n], denominator[n]) for n in names}


def safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """Element-wise ratio, 0 where the denominator is 0."""
    out = numerator / denominator.clamp_min(torch.finfo(torch.float32).tiny)
    return torch.where(denominator > 0, out, torch.zeros_like(out)).to(numerator.dtype)


def _acc_dtype(tensor: Tensor) -> torch.dtype:
    # float64 sums of float32 values: the order of the terms (how clients are shared out over
    # DDP ranks) changes them by ~1e-16, below float32 resolution once cast back.
    return torch.float64
