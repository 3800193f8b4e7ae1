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
    def lora_E(self) -> torch.Tensor | None:
        """``[max_rank]`` singular values of an SVD-form adapter (``None`` for plain LoRA)."""
        values = getattr(self.layer, "lora_E", None)
        return values[self.adapter_name] if values is not None else None

    @property
    def max_rank(self) -> int:
        return int(self.lora_A.shape[0])

    @property
    def rslora(self) -> bool:
        """Whether peft scales this adapter by ``alpha / sqrt(r)`` (rank-stabilised LoRA)."""
        return bool(getattr(self.layer, "use_rslora", {}).get(self.adapter_name, False))

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


def adapter_tensors(
    layers: dict[str, LoraFactors], heads: dict[str, nn.Parameter] | None = None
) -> dict[str, torch.Tensor]:
    """Detached float32 copies of all factors, keyed ``"<module>.lora_A"`` / ``".lora_B"``,
    and of the head parameters (``find_head_parameters``) under their own names."""
    out = {}
    for name, factors in layers.items():
        out[f"{name}.lora_A"] = factors.lora_A.detach().float().clone()
        out[f"{name}.lora_B"] = factors.lora_B.detach().float().clone()
        if factors.lora_E is not None:
            out[f"{name}.lora_E"] = factors.lora_E.detach().float().clone()
    for name, param in (heads or {}).items():
        out[name] = param.detach().float().clone()
    return out


def parameter_of(
    layers: dict[str, LoraFactors], name: str, heads: dict[str, nn.Parameter] | None = None
) -> torch.nn.Parameter:
    """The live parameter behind a ``"<module>.lora_A"`` / ``".lora_B"`` or head name."""
    if heads and name in heads:
        return heads[name]
    module, kind = name.rsplit(".", 1)
    return getattr(layers[module], kind)


@torch.no_grad()
def load_adapter_tensors(
    layers: dict[str, LoraFactors],
    tensors: dict[str, torch.Tensor],
    heads: dict[str, nn.Parameter] | None = None,
) -> None:
    """Copy named factor (and head) tensors into the live parameters (dtype/device converted)."""
    for name, value in tensors.items():
        param = parameter_of(layers, name, heads)
        param.copy_(value.to(device=param.device, dtype=param.dtype))


def find_head_parameters(
    model: nn.Module, adapter_name: str = "default"
) -> dict[str, nn.Parameter]:
    """Trainable copies of peft's ``modules_to_save`` (a classification head) and the biases
    peft trains (``bias="all"`` or ``"lora_only"``), by name.

    Names are relative to the base model, as in the exported adapter (``"score.weight"``); these
    dense tensors are federated with the LoRA factors (sent whole, no rank). Call it on a freshly
    wrapped model: trained biases are found by ``requires_grad``, as peft leaves them.
    """
    from peft.utils import ModulesToSaveWrapper

    found = {}
    for name, module in model.named_modules():
        if isinstance(module, ModulesToSaveWrapper) and adapter_name in module.modules_to_save:
            for param_name, param in module.modules_to_save[adapter_name].named_parameters():
                found[f"{strip_peft_prefix(name)}.{param_name}"] = param
    for name, param in model.named_parameters():
        skip = ".lora_" in name or ".modules_to_save." in name or ".original_module." in name
        if name.endswith(".bias") and param.requires_grad and not skip:
            found[strip_peft_prefix(name)] = param
    return found
