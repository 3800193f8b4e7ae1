"""Element-wise top-k sparsification of LoRA updates (the "naive" baseline SOFT improves on)."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_airlora.compression.bits import index_bits
from lit_airlora.compression.elementwise import ElementwiseSparsifier


class TopK(ElementwiseSparsifier):
    """Send the largest-magnitude ``1 - rho`` fraction of the entries of each factor's update.

    Positions are priced honestly: ``min(k ceil(log2 n), n)`` bits per tensor (a list of
    positions or a bitmap, whichever is smaller). Sparsifying A and B element-wise breaks the
    rank-one structure of ``B A``, which is why SOFT's component-wise selection beats it.

    Args:
        rho: Fraction of entries dropped, in ``[0, 1)``.
    """

    def select(self, values, num_kept, generator):
        return topk_indices(values, num_kept)

    def position_bits(self, num_kept, numel):
        return index_bits(num_kept, numel)


def topk_indices(values: Tensor, num_kept: int) -> Tensor:
    """Flat indices of the ``num_kept`` largest ``|values|`` (``values: [n]``)."""
    return torch.topk(values.abs(), num_kept, sorted=False).indices
