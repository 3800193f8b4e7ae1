"""Observations computed from LoRA factors and uploads: shapes, importance, update spectra."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from lit_airlora.federated.upload import Upload
from lit_airlora.lora.layers import LoraFactors
from lit_airlora.lora.masks import component_importance
from lit_airlora.policy.spectrum import update_spectrum

#: Observation name -> keys it may be logged under, most specific first (our module's, then
#: common names in other LightningModules).
SCALAR_KEYS: dict[str, tuple[str, ...]] = {
    "train_loss": ("round/train_loss", "train_loss", "train/loss", "loss"),
    "val_loss": ("val/loss", "val_loss"),
    "token_entropy": ("round/token_entropy", "token_entropy"),
    "unk_rate": ("round/unk_rate", "unk_rate"),
}


def module_shapes(layers: Mapping[str, LoraFactors]) -> dict[str, tuple[int, int]]:
    """Module -> ``(d_in, d_out)`` of each adapted linear layer."""
    return {name: (int(f.lora_A.shape[1]), int(f.lora_B.shape[0])) for name, f in layers.items()}


def factor_importance(layers: Mapping[str, LoraFactors]) -> dict[str, Tensor]:
    """Module -> ``[max_rank]`` importance ``||b_i|| ||a_i||`` of the live factors, on CPU."""
    return {
        name: component_importance(f.lora_A.detach(), f.lora_B.detach()).cpu()
        for name, f in layers.items()
    }


def named_scalar(scalars: Mapping[str, float], name: str) -> float | None:
    """The first of ``SCALAR_KEYS[name]`` present in ``scalars`` (as float), else None."""
    for key in SCALAR_KEYS[name]:
        if key in scalars:
            return float(scalars[key])
    return None


def effective_scale(factors: LoraFactors, rank: int, max_rank: int) -> float:
    """Scale of ``B A`` in the adapted weight: peft's ``alpha / max_rank`` times the mask's
    ``max_rank / rank`` (1.0 for a layer without a peft ``scaling``)."""
    scaling = getattr(factors.layer, "scaling", {}).get(factors.adapter_name, 1.0)
    return float(scaling) * max_rank / rank


def adapter_update_spectra(
    layers: Mapping[str, LoraFactors],
    before: Mapping[str, Tensor],
    after: Mapping[str, Tensor],
    ranks: Mapping[str, int],
) -> dict[str, Tensor]:
    """Module -> ``[max_rank]`` singular values of the weight update from ``before`` to ``after``.

    Args:
        layers: The LoRA layers (for the scaling and max rank).
        before: ``"<module>.lora_A"`` / ``".lora_B"`` -> factor at the start of the round.
        after: Same names -> factor after the round.
        ranks: Active rank of each module during the round.
    """
    spectra = {}
    for name, factors in layers.items():
        rank, max_rank = int(ranks[name]), factors.max_rank
        a0, a1 = (d[f"{name}.lora_A"][:rank].cpu() for d in (before, after))  # (r, d_in)
        b0, b1 = (d[f"{name}.lora_B"][:, :rank].cpu() for d in (before, after))  # (d_out, r)
        scale = effective_scale(factors, rank, max_rank)
        spectra[name] = update_spectrum(a0, b0, a1, b1, scale, max_rank)
    return spectra


def upload_power_sums(uploads: Iterable[Upload]) -> Tensor:
    """``[2]`` float64: sum of squared sent values and number of sent values over ``uploads``."""
    total = torch.zeros(2, dtype=torch.float64)
    for upload in uploads:
        for name, tensor in upload.tensors.items():
            sent = tensor.detach().double()[upload.sent_mask(name)]
            total[0] += sent.square().sum().cpu()
            total[1] += sent.numel()
    return total


def factor_update_power(before: Mapping[str, Tensor], after: Mapping[str, Tensor]) -> Tensor:
    """``[2]`` float64 like :func:`upload_power_sums`, for one update ``after - before``."""
    total = torch.zeros(2, dtype=torch.float64)
    for name, value in after.items():
        delta = (value.double() - before[name].double()).cpu()
        total[0] += delta.square().sum()
        total[1] += int((delta != 0).sum())
    return total
