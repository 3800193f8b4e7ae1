"""Rank-one components of a LoRA upload: local factors, and uploads that send some of them.

An upload carries the update (local minus global) of ``A: [max_rank, d_in]`` and
``B: [d_out, max_rank]``; component ``i`` is row ``a_i^T`` of A and column ``b_i`` of B.
Component encoders (SOFT, SVD truncation) pick components per module and send the update of
those only: a component not sent is a zero update, i.e. it keeps its global value at the server.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from lit_airlora.federated.upload import Upload


class ModuleFactors(NamedTuple):
    """One module's factors over its active ranks, float32.

    ``*_a`` is A ``[r, d_in]`` (rows ``a_i^T``), ``*_b`` is B ``[d_out, r]`` (columns ``b_i``).
    """

    local_a: Tensor
    local_b: Tensor
    global_a: Tensor
    global_b: Tensor


def factor_names(module: str) -> tuple[str, str]:
    return f"{module}.lora_A", f"{module}.lora_B"


def module_factors(upload: Upload, global_adapter: dict[str, Tensor], module: str) -> ModuleFactors:
    """Global and local (global + update) factors of ``module`` over its active ranks.

    A factor the upload does not carry (e.g. a frozen A) is taken as unchanged.
    """
    rank = upload.ranks[module]
    name_A, name_B = factor_names(module)
    global_a = global_adapter[name_A][:rank].float()
    global_b = global_adapter[name_B][:, :rank].float()
    local_a = (
        global_a + upload.tensors[name_A][:rank].float() if name_A in upload.tensors else global_a
    )
    local_b = (
        global_b + upload.tensors[name_B][:, :rank].float()
        if name_B in upload.tensors
        else global_b
    )
    return ModuleFactors(local_a, local_b, global_a, global_b)


def send_components(
    upload: Upload, keep: dict[str, Tensor], updates: dict[str, Tensor] | None = None
) -> Upload:
    """A new upload sending, per module, only the components flagged in ``keep``.

    Args:
        upload: The original upload (not mutated).
        keep: Module -> ``[r]`` bool, the components sent (``r`` = the module's active rank).
        updates: Optional replacement update tensors (full shape), e.g. after a rotation;
            defaults to ``upload.tensors``.

    Returns:
        An upload whose tensors are zero outside the kept components and whose masks flag
        them (rows of A, columns of B).
    """
    source = upload.tensors if updates is None else updates
    tensors, masks = dict(upload.tensors), dict(upload.masks)
    for module, kept in keep.items():
        for name in factor_names(module):
            if name not in upload.tensors:
                continue
            mask = component_mask(name, source[name], kept)
            tensors[name] = torch.where(mask, source[name], torch.zeros_like(source[name]))
            masks[name] = mask
    return upload.replace(tensors=tensors, masks=masks)


def component_mask(name: str, tensor: Tensor, kept: Tensor) -> Tensor:
    """Bool mask of ``tensor`` (a factor) covering the kept components of its first ``r``."""
    is_A = name.endswith("lora_A")
    full = torch.zeros(tensor.shape[0 if is_A else 1], dtype=torch.bool, device=tensor.device)
    full[: kept.numel()] = kept.to(tensor.device)
    view = full[:, None] if is_A else full[None, :]
    return view.expand_as(tensor).clone()
