"""Element-wise sparsification of LoRA updates: the shared encoder loop of top-k and random-k."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_airlora.compression.base import SparseEncoder, keep_count
from lit_airlora.compression.bits import with_index_bits


class ElementwiseSparsifier(SparseEncoder):
    """Keep ``ceil((1 - rho) n)`` of the ``n`` active entries of every update tensor.

    Each tensor (``lora_A`` and ``lora_B`` alike) is sparsified on its own, within its
    active-rank block; entries not sent are zero. Subclasses choose the entries
    (:meth:`select`) and price their positions (:meth:`position_bits`).

    Args:
        rho: Fraction of entries dropped, in ``[0, 1)``.
    """

    def select(self, values: Tensor, num_kept: int, generator: torch.Generator) -> Tensor:
        """Flat indices of the entries kept out of ``values: [n]``."""
        raise NotImplementedError

    def position_bits(self, num_kept: int, numel: int) -> int:
        """Bits the server needs to know the kept positions."""
        raise NotImplementedError

    def scale(self, num_kept: int, numel: int) -> float:
        """Factor applied to the kept values (1: biased towards zero, as sent)."""
        return 1.0

    def encode(self, upload, global_adapter, generator):
        tensors, masks, position_bits = dict(upload.tensors), dict(upload.masks), 0
        for name, tensor in upload.tensors.items():
            active = upload.sent_mask(name)
            numel = int(active.sum())
            num_kept = keep_count(numel, self.rho)
            chosen = self.select(tensor[active].float(), num_kept, generator)
            kept = torch.zeros(numel, dtype=torch.bool, device=tensor.device)
            kept[chosen.to(tensor.device)] = True
            masks[name] = torch.zeros_like(active).masked_scatter(active, kept)
            scaled = tensor * self.scale(num_kept, numel)
            tensors[name] = torch.where(masks[name], scaled, torch.zeros_like(tensor))
            position_bits += self.position_bits(num_kept, numel)
        encoded = upload.replace(tensors=tensors, masks=masks)
        return with_index_bits(encoded, position_bits), {}
