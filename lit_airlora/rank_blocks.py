"""Rank blocks of LoRA tensors, by name: which tensors are rank-indexed, and where their first
``r`` components are.

Adapter tensors are named ``"<module>.lora_A"`` (``[max_rank, d_in]``), ``"<module>.lora_B"``
(``[d_out, max_rank]``) and, in SVD form, ``"<module>.lora_E"`` (``[max_rank]``); any other
name is a dense tensor sent whole (a classification head). Shared by the round (uploads,
aggregators) and the radio (payload layouts), so it lives below both.
"""

from __future__ import annotations

import torch
from torch import Tensor


def module_of(name: str) -> str:
    """Adapted module name of a LoRA tensor name (``"a.b.lora_A"`` -> ``"a.b"``)."""
    return name.rsplit(".", 1)[0]


def is_lora_factor(name: str) -> bool:
    """Whether ``name`` is a rank-indexed LoRA tensor (``"<module>.lora_A"``, ``".lora_B"``,
    or the singular values ``".lora_E"`` of an SVD-form adapter), not a dense tensor such as a
    classification head."""
    return name.endswith((".lora_A", ".lora_B", ".lora_E"))


def active_index(name: str, ranks: dict[str, int]) -> tuple[slice, ...]:
    """Index of the active-rank block of a LoRA factor: rows of A (``[:r]``), entries of E
    (``[:r]``), columns of B (``[:, :r]``); a dense tensor is active whole."""
    if not is_lora_factor(name):
        return (slice(None),)
    return rank_index(name, ranks[module_of(name)])


def rank_index(name: str, rank: int) -> tuple[slice, ...]:
    """Index of the first ``rank`` components of a LoRA tensor (B: columns, A and E: rows)."""
    return (slice(None), slice(0, rank)) if name.endswith("lora_B") else (slice(0, rank),)


def active_rank_mask(name: str, tensor: Tensor, ranks: dict[str, int]) -> Tensor:
    """Mask of the active-rank block of a tensor (see :func:`active_index`)."""
    mask = torch.zeros_like(tensor, dtype=torch.bool)
    mask[active_index(name, ranks)] = True
    return mask
