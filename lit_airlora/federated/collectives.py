"""Sums and gathers over DDP ranks (identity on a single process)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    return torch.distributed.get_world_size() if _distributed() else 1


def reduce_sum(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Sum every tensor over ranks in one flat all-reduce per dtype (returns new tensors)."""
    out = {name: t.clone() for name, t in tensors.items()}
    if world_size() == 1:
        return out
    by_dtype: dict[torch.dtype, list[str]] = {}
    for name in sorted(out):
        by_dtype.setdefault(out[name].dtype, []).append(name)
    for names in by_dtype.values():
        flat = torch.cat([out[n].reshape(-1) for n in names])  # (sum of numels,)
        flat = _all_reduce(flat)
        for name, part in zip(names, flat.split([out[n].numel() for n in names]), strict=True):
            # Own storage, as on one process: a view into the flat buffer can sit at an odd
            # offset, which view_as_complex (over-the-air signals) refuses.
            out[name] = part.view_as(out[name]).clone()
    return out


def gather_objects(obj: object) -> list[object]:
    """All ranks' ``obj`` in rank order (a list of one on a single process)."""
    if world_size() == 1:
        return [obj]
    gathered: list[object] = [None] * world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def _all_reduce(flat: Tensor) -> Tensor:
    """All-reduce on the device the process group needs (NCCL wants CUDA tensors)."""
    if torch.distributed.get_backend() == "nccl" and not flat.is_cuda:
        moved = flat.cuda()
        torch.distributed.all_reduce(moved)
        return moved.to(flat.device)
    torch.distributed.all_reduce(flat)
    return flat
