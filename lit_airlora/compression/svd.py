"""SVD truncation of the client's LoRA product ``B A`` (accurate, costly baseline)."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_airlora.compression.base import SparseEncoder, keep_count
from lit_airlora.compression.bits import with_index_bits
from lit_airlora.compression.components import factor_names, module_factors, send_components
from lit_airlora.lora.masks import component_importance, rotate_to_svd


class SVDTruncation(SparseEncoder):
    """Send the top ``ceil((1 - rho) r)`` singular components of each module's local ``B A``.

    The local factors (global + update) are rotated to the SVD of ``B A``
    (``b_i = sqrt(s_i) u_i``, ``a_i = sqrt(s_i) v_i``, via QR of both factors and an ``r x r``
    SVD), which is the best rank-``k`` approximation; the upload carries the update of the
    first ``k`` rotated components (rotated local minus global), the others are zero updates as
    in SOFT. The kept components sit first, so the positions cost no bits. The rotation costs
    ``O(r^2 (d_in + d_out))`` per module and per client, against SOFT's ``O(r (d_in + d_out))``;
    the rotated bases differ between clients, which hurts aggregating A and B separately.

    Args:
        rho: Fraction of components dropped, in ``[0, 1)``.
    """

    stat_names = ("sparsification_error",)

    def encode(self, upload, global_adapter, generator):
        updates, keep, error = dict(upload.tensors), {}, 0.0
        for module in sorted(upload.ranks):
            _check_both_factors(upload, module)
            factors = module_factors(upload, global_adapter, module)
            rotated_a, rotated_b, singular = svd_factors(factors.local_a, factors.local_b)
            keep[module] = torch.arange(singular.numel()) < keep_count(singular.numel(), self.rho)
            error += float(singular[~keep[module]].double().square().sum())
            rank = upload.ranks[module]
            name_a, name_b = factor_names(module)
            updates[name_a] = upload.tensors[name_a].clone()
            updates[name_a][:rank] = rotated_a - factors.global_a
            updates[name_b] = upload.tensors[name_b].clone()
            updates[name_b][:, :rank] = rotated_b - factors.global_b
        encoded = send_components(upload, keep, updates)
        return with_index_bits(encoded, 0), {"sparsification_error": error}


def svd_factors(lora_a: Tensor, lora_b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Factors of ``B A`` in SVD form, singular values descending.

    Args:
        lora_a: ``[r, d_in]``.
        lora_b: ``[d_out, r]``.

    Returns:
        ``(A', B', s)`` with ``B' A' = B A``, ``A' = diag(sqrt s) V^T: [r, d_in]``,
        ``B' = U diag(sqrt s): [d_out, r]``, ``s: [r]``.
    """
    rotated_a, rotated_b = lora_a.float().clone(), lora_b.float().clone()
    rotate_to_svd(rotated_a, rotated_b, lora_a.shape[0])
    return rotated_a, rotated_b, component_importance(rotated_a, rotated_b)


def _check_both_factors(upload, module: str) -> None:
    missing = [name for name in factor_names(module) if name not in upload.tensors]
    if missing:
        raise ValueError(
            f"SVDTruncation rotates both LoRA factors, but the upload has no {missing[0]!r}: "
            "use it with an aggregator that trains A and B (FedIT), or use SOFT or TopK."
        )
