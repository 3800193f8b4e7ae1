"""SOFT: sparsified orthogonal fine-tuning of LoRA updates, without SVD (the encoder and its maths).

Kim & Choi, "Communication-Efficient Wireless Federated Fine-Tuning for Large-Scale AI Models"
(arXiv 2505.00333).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_airlora.compression.base import SparseEncoder, keep_count
from lit_airlora.compression.bits import with_index_bits
from lit_airlora.compression.components import ModuleFactors, module_factors, send_components
from lit_airlora.compression.lowrank import factored_frobenius_sq
from lit_airlora.lora.masks import component_importance


class SOFTEncoder(SparseEncoder):
    """Keep the ``ceil((1 - rho) r)`` most important rank-one components of each module.

    ``Delta W = B A = sum_i b_i a_i^T``. With near-orthogonal factors (the SOFT regulariser)
    the importance ``s_i = ||b_i|| ||a_i||`` equals the singular values of ``B A``, so ranking
    components by ``s_i`` sparsifies ``B A`` like an SVD truncation at ``O(r (d_in + d_out))``
    cost. Importance is measured on the client's *local* factors (global + update), the model
    the client holds; the upload then carries the *update* of the kept components and an
    ``r``-bit mask per module. A dropped component is a zero update: the server keeps its
    global value for that client (the paper's servers average factors, where a missing
    component counts as zero; with updates that zero means "unchanged").

    Statistics per upload (summed over modules, unscaled by LoRA's ``alpha / r``):
    ``sparsification_error`` ``||B A - B_I A_I||_F^2`` on the local factors (exact, from Gram
    matrices), ``error_estimate`` the orthogonality-based ``sum_{i dropped} s_i^2``,
    ``relative_error`` the first over ``||B A||_F^2``, and ``update_error`` the error of the
    server's view of the client's product (dropped components at their global value).

    Args:
        rho: Fraction of components dropped, in ``[0, 1)``.
    """

    stat_names = ("sparsification_error", "error_estimate", "relative_error", "update_error")

    def encode(self, upload, global_adapter, generator):
        keep, totals = {}, {}
        for module in sorted(upload.ranks):
            factors = module_factors(upload, global_adapter, module)
            importance = component_importance(factors.local_a, factors.local_b)
            keep[module] = top_components(importance, keep_count(importance.numel(), self.rho))
            for key, value in component_errors(factors, keep[module]).items():
                totals[key] = totals.get(key, 0.0) + value
        mask_bits = sum(kept.numel() for kept in keep.values())  # r bits per module
        encoded = with_index_bits(send_components(upload, keep), mask_bits)
        energy = totals.pop("energy", 0.0)
        stats = dict.fromkeys(self.stat_names, 0.0) | totals
        stats["relative_error"] = stats["sparsification_error"] / energy if energy > 0 else 0.0
        return encoded, stats


def top_components(importance: Tensor, num_kept: int) -> Tensor:
    """``[r]`` bool: the ``num_kept`` largest entries of ``importance`` (ties: lower index)."""
    order = torch.argsort(importance, descending=True, stable=True)
    keep = torch.zeros_like(importance, dtype=torch.bool)
    keep[order[:num_kept]] = True
    return keep


def component_errors(factors: ModuleFactors, keep: Tensor) -> dict[str, float]:
    """Errors of sending only the ``keep`` components of one module (see :class:`SOFTEncoder`)."""
    drop = ~keep
    A, B = factors.local_a, factors.local_b  # (r, d_in), (d_out, r)
    importance = component_importance(A, B)
    server_B = torch.cat([B[:, drop], -factors.global_b[:, drop]], dim=1)  # (d_out, 2 |D|)
    server_A = torch.cat([A[drop], factors.global_a[drop]], dim=0)  # (2 |D|, d_in)
    return {
        "sparsification_error": factored_frobenius_sq(B[:, drop], A[drop]),
        "error_estimate": float(importance[drop].double().square().sum()),
        "update_error": factored_frobenius_sq(server_B, server_A),
        "energy": factored_frobenius_sq(B, A),
    }


def expected_error_fraction(importance: Tensor, rho: float) -> float:
    """Model of the relative sparsification error ``E_sp(rho)`` under orthogonality.

    ``sum_{i > k} s_(i)^2 / sum_i s_i^2`` with ``s`` sorted descending and
    ``k = ceil((1 - rho) r)``; components of equal importance (all zero, e.g. a fresh LoRA
    with ``B = 0``) give the dropped fraction ``(r - k) / r``.

    Args:
        importance: ``[r]`` importances ``s_i`` of one module's components.
        rho: Sparsity ratio in ``[0, 1)``.
    """
    rank = importance.numel()
    kept = keep_count(rank, rho)
    energy = importance.double().square().sort(descending=True).values
    total = float(energy.sum())
    if total <= 0.0:
        return (rank - kept) / rank
    return float(energy[kept:].sum()) / total


def adapter_error_model(adapter: dict[str, Tensor], rank: int, rhos: list[float]) -> Tensor:
    """``[G]``: :func:`expected_error_fraction` of each ``rho``, averaged over the modules.

    Args:
        adapter: Name -> factor (``"<module>.lora_A"`` / ``".lora_B"``), e.g. the global adapter.
        rank: Active rank of every module.
        rhos: Sparsity ratios.
    """
    profiles = [
        component_importance(adapter[name][:rank], adapter[f"{name[: -len('A')]}B"][:, :rank])
        for name in adapter
        if name.endswith("lora_A")
    ]
    errors = [
        sum(expected_error_fraction(s, rho) for s in profiles) / len(profiles) for rho in rhos
    ]
    return torch.tensor(errors, dtype=torch.float64)


def soft_payload_bits(
    rho: float, rank: int, dims: list[tuple[int, int]], value_bits: int = 32
) -> int:
    """Uplink bits of one SOFT upload: kept components' values plus an ``r``-bit mask per module.

    Args:
        rho: Sparsity ratio in ``[0, 1)``.
        rank: Active rank of every module.
        dims: ``(d_in, d_out)`` of every adapted module.
        value_bits: Bits per value (32 for float32).
    """
    kept = keep_count(rank, rho)
    return sum(value_bits * kept * (d_in + d_out) + rank for d_in, d_out in dims)
