"""Merging weight deltas into the frozen base layers, and restarting the adapter (FLoRA)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from lit_airlora.lora.layers import LoraFactors


def base_weight(factors: LoraFactors) -> Tensor:
    """The frozen base weight of an adapted module: ``[d_out, d_in]`` (transposed for
    ``fan_in_fan_out`` layers such as GPT-2's ``Conv1D``, whose weight is ``[d_in, d_out]``)."""
    weight = factors.layer.get_base_layer().weight
    return weight.T if getattr(factors.layer, "fan_in_fan_out", False) else weight


@torch.no_grad()
def merge_into_base(
    layers: Mapping[str, LoraFactors], deltas: Mapping[str, Tensor], scale: float = 1.0
) -> None:
    """``W_l += scale * scaling_l * delta_l`` in place, ``scaling_l`` the adapter's ``alpha /
    max_rank`` (the units of :class:`~lit_airlora.federated.flora.FLoRA`'s merged deltas).

    Args:
        layers: The module's LoRA layers (name -> factors).
        deltas: Module name -> ``[d_out, d_in]`` delta of ``B A`` at the max-rank scaling.
        scale: Server learning rate.
    """
    for name, delta in deltas.items():
        factors = layers[name]
        weight = base_weight(factors)
        scaling = float(factors.layer.scaling[factors.adapter_name])
        weight.add_(delta.to(device=weight.device, dtype=weight.dtype), alpha=scale * scaling)


def fresh_factors(
    layers: Mapping[str, LoraFactors], generator: torch.Generator
) -> dict[str, Tensor]:
    """A re-initialised adapter as peft initialises one: ``A`` Kaiming-uniform
    (``a = sqrt(5)``: ``U(-1/sqrt(d_in), 1/sqrt(d_in))``), ``B = 0``; float32, on CPU."""
    out = {}
    for name, factors in layers.items():
        a = torch.empty(tuple(factors.lora_A.shape), dtype=torch.float32)
        torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        out[f"{name}.lora_A"] = a
        out[f"{name}.lora_B"] = torch.zeros(tuple(factors.lora_B.shape), dtype=torch.float32)
    return out
