"""Random-k sparsification of LoRA updates, from a generator the server can replay."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_airlora.compression.elementwise import ElementwiseSparsifier


class RandomK(ElementwiseSparsifier):
    """Send a uniformly random ``1 - rho`` fraction of the entries of each factor's update.

    The positions come from the client's generator for the round, seeded from the round's
    shared seed and the client id, both known to the server: it replays the draw, so positions
    cost no bits.

    Args:
        rho: Fraction of entries dropped, in ``[0, 1)``.
        unbiased: Scale kept values by ``n / k`` so the sparsified update is unbiased (at the
            price of variance); otherwise send them as they are.
    """

    def __init__(self, rho: float = 0.5, unbiased: bool = False):
        super().__init__(rho)
        self.unbiased = bool(unbiased)

    def select(self, values, num_kept, generator):
        return randomk_indices(values.numel(), num_kept, generator)

    def position_bits(self, num_kept, numel):
        return 0

    def scale(self, num_kept, numel):
        return numel / num_kept if self.unbiased and num_kept else 1.0


def randomk_indices(numel: int, num_kept: int, generator: torch.Generator) -> Tensor:
    """``num_kept`` distinct flat indices in ``[0, numel)``, uniformly at random."""
    return torch.randperm(numel, generator=generator)[:num_kept]
