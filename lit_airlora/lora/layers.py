"""Finding peft LoRA layers in any model, as (A, B) factor views."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LoraFactors:
    """The two factors of one adapted module.

    Attributes:
        layer: The peft ``LoraLayer``.
        adapter_name: The adapter inside it.
    """

    layer: nn.Module
    adapter_name: str

    @property
    def lora_A_module(self) -> nn.Module:
        return self.layer.lora_A[self.adapter_name]

    @property
    def lora_A(self) -> torch.Tensor:
        """``[max_rank, d_in]`` parameter."""
        return self.lora_A_module.weight

    @property
    def lora_B(self) -> torch.Tensor:
        """``[d_out, max_rank]`` parameter."""
        return self.layer.lora_B[self.adapter_name].weight

    @property
    def max_rank(self) -> int:
        return int(self.lora_A.shape[0])

    @property
    def device(self) -> torch.device:
        return self.lora_A.device


def find_lora_layers(model: nn.Module, adapter_name: str = "default") -> dict[str, LoraFactors]:
    """Map module names (relative to the base model, as peft's ``rank_pattern`` keys) to factors.

    Works on a ``PeftModel`` or any LightningModule holding one.
    """
    from peft.tuners.lora import LoraLayer

    found = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and adapter_name in getattr(module, "lora_A", {}):
            found[strip_peft_prefix(name)] = LoraFactors(module, adapter_name)
    return found


def strip_peft_prefix(name: str) -> str:
    """``"...base_model.model.model.layers.0.q_proj"`` -> ``"model.layers.0.q_proj"``."""
    marker = "base_model.model."
    return name.split(marker, 1)[1] if marker in name else name


def adapter_tensors(layers: dict[str, LoraFactors]) -> dict[str, torch.Tensor]:
    """Detached float32 copies of all factors, keyed ``"<module>.lora_A"`` / ``".lora_B"``."""
    out = {}
    for name, factors in layers.items():
        out[f"{name}.lora_A"] = factors.lora_A.detach().float().clone()
        out[f"{name}.lora_B"] = factors.lora_B.detach().float().clone()
    return out


def parameter_of(layers: dict[str, LoraFactors], name: str) -> torch.nn.Parameter:
    """The live parameter behind a ``"<module>.lora_A"`` / ``".lora_B"`` name."""
    module, kind = name.rsplit(".", 1)
    factors = layers[module]
    return factors.lora_A if kind == "lora_A" else factors.lora_B


@torch.no_grad()
def load_adapter_tensors(layers: dict[str, LoraFactors], tensors: dict[str, torch.Tensor]) -> None:
    """Copy named factor tensors into the live parameters (in place, dtype/device converted)."""
    for name, value in tensors.items():
        param = parameter_of(layers, name)
        param.copy_(value.to(device=param.device, dtype=param.dtype))
