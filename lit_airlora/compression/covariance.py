"""The factor-covariance term of aggregating the two LoRA factors separately.

Averaging A and B separately gives ``B_bar A_bar``, not the average product: with weights
``w_k`` summing to one, ``sum_k w_k B_k A_k - B_bar A_bar = sum_k w_k (B_k - B_bar)(A_k - A_bar)``.
We log the weighted mean of the per-client energies,
``C = sum_k w_k sum_modules ||(B_k - B_bar)(A_k - A_bar)||_F^2``, which bounds the squared
norm of that mismatch (Jensen) and, unlike it, is a sum over clients, so DDP ranks add their
parts with one all-reduce. Equal weights give the ``(1/K) sum_k`` form. Only deviations from the
mean enter, so it is computed from the updates directly (the global adapter cancels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lit_airlora.compression.components import factor_names
from lit_airlora.compression.lowrank import factored_frobenius_sq
from lit_airlora.federated.aggregators import WEIGHT_KEY, Reduce, identity_reduce
from lit_airlora.federated.upload import Upload


def factor_covariance(
    uploads: Sequence[Upload], reference: dict[str, Tensor], reduce: Reduce = identity_reduce
) -> float:
    """``C`` over all clients of the round (see the module docstring).

    Args:
        uploads: This rank's (received) uploads.
        reference: Name -> tensor of every adapter tensor (e.g. the global adapter), the same
            on every rank: it fixes the keys and shapes of the reductions, so a rank with no
            uploads still takes part.
        reduce: Sums a dict of tensors over DDP ranks (identity on one process).
    """
    sums = reduce(weighted_sums(uploads, reference))
    total = sums.pop(WEIGHT_KEY)
    total_weight, device = float(total), total.device
    if total_weight <= 0:
        return 0.0
    means = {name: value / total_weight for name, value in sums.items()}
    spread = weighted_spread(uploads, means)
    spread = reduce({"spread": torch.tensor(spread, dtype=torch.float64, device=device)})
    return float(spread["spread"]) / total_weight


def weighted_sums(uploads: Sequence[Upload], reference: dict[str, Tensor]) -> dict[str, Tensor]:
    """``sum_k w_k Delta_k`` per tensor name, and ``WEIGHT_KEY``: ``sum_k w_k`` (float64)."""
    sums = {name: torch.zeros_like(value, dtype=torch.float64) for name, value in reference.items()}
    for upload in uploads:
        for name, value in upload.tensors.items():
            sums[name] += upload.weight * value.to(sums[name])
    device = next(iter(reference.values())).device
    weight = float(sum(upload.weight for upload in uploads))
    sums[WEIGHT_KEY] = torch.tensor(weight, dtype=torch.float64, device=device)
    return sums


def weighted_spread(uploads: Sequence[Upload], means: dict[str, Tensor]) -> float:
    """``sum_k w_k sum_modules ||(B_k - B_bar)(A_k - A_bar)||_F^2`` over these uploads."""
    total = 0.0
    for upload in uploads:
        for module in upload.ranks:
            name_a, name_b = factor_names(module)
            centred_a = upload_tensor(upload, name_a, means) - means[name_a]
            centred_b = upload_tensor(upload, name_b, means) - means[name_b]
            total += upload.weight * factored_frobenius_sq(centred_b, centred_a)
    return total


def upload_tensor(upload: Upload, name: str, reference: dict[str, Tensor]) -> Tensor:
    """The upload's update for ``name`` in float64, zero when it does not carry it."""
    value = upload.tensors.get(name)
    return torch.zeros_like(reference[name]) if value is None else value.double()
