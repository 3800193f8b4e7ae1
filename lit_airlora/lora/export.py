"""Export a masked adapter in peft's own format, active ranks in ``rank_pattern``."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

import torch

from lit_airlora.lora.svd_form import fold_singular_values


def export_peft_adapter(
    peft_model, ranks: Mapping[str, int], folder: str | Path, adapter_name: str = "default"
) -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` truncated to the ranks.

    ``PeftModel.from_pretrained(base, folder)`` then rebuilds each module at its active rank with
    scaling ``alpha / rank`` (``alpha / sqrt(rank)`` with rsLoRA), as the rank masks compute.
    SVD-form adapters are written as plain LoRA with ``e`` folded into ``B``.

    Args:
        peft_model: The ``PeftModel`` holding the (max-rank) adapter to export.
        ranks: Active rank per module (names relative to the base model).
        folder: Output folder (created).
        adapter_name: The peft adapter to export (saved as peft's default adapter).
    """
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = fold_singular_values(get_peft_model_state_dict(peft_model, adapter_name=adapter_name))
    truncated = {key: _truncate(key, value, ranks) for key, value in state.items()}
    save_file(
        {k: v.contiguous() for k, v in truncated.items()}, str(folder / "adapter_model.safetensors")
    )
    config = copy.deepcopy(peft_model.peft_config[adapter_name])
    config.rank_pattern = {name: int(rank) for name, rank in ranks.items()}
    config.inference_mode = True
    config.save_pretrained(str(folder))
    return folder


def _truncate(key: str, value: torch.Tensor, ranks: Mapping[str, int]) -> torch.Tensor:
    module = _module_name(key)
    if module is None or module not in ranks:
        return value.detach().cpu()
    rank = ranks[module]
    if ".lora_A." in key:
        return value[:rank].detach().cpu()
    return value[:, :rank].detach().cpu()


def _module_name(key: str) -> str | None:
    for marker in (".lora_A.", ".lora_B."):
        if marker in key:
            prefix = key.split(marker, 1)[0]
            return prefix.split("base_model.model.", 1)[-1]
    return None


def export_merged_adapter(
    peft_model,
    layers: Mapping,
    original_weights: Mapping[str, torch.Tensor],
    ranks: Mapping[str, int],
    folder: str | Path,
    adapter_name: str = "default",
) -> Path:
    """Export what merging aggregators (FLoRA) trained: per module, the base weight's change
    since the start plus the live adapter, as an exact peft LoRA of that matrix's rank.

    ``W_now - W_0 + (alpha / r) B A = U S V^T`` is written as ``B = U sqrt(S)``,
    ``A = sqrt(S) V^T`` truncated to the numerical rank (singular values above
    ``max(d) * eps32 * s_max``), with ``rank_pattern`` and ``alpha_pattern`` set so peft's
    scaling is 1: ``PeftModel.from_pretrained(original_base, folder)`` computes the trained model.

    Args:
        peft_model: The ``PeftModel`` holding the (max-rank) adapter and the merged base weights.
        layers: Its LoRA layers (``find_lora_layers``).
        original_weights: Module name -> ``[d_out, d_in]`` base weight before any merge.
        ranks: Active rank per module.
        folder: Output folder (created).
        adapter_name: The peft adapter to export (saved as peft's default adapter).
    """
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from lit_airlora.lora.merge import base_weight

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    factors = {}
    for name, layer in layers.items():
        delta = base_weight(layer).detach().double().cpu() - original_weights[name].double()
        rank = ranks[name]
        scaling = float(layer.layer.scaling[layer.adapter_name]) * layer.max_rank / rank
        b = layer.lora_B[:, :rank].detach().double().cpu()
        a = layer.lora_A[:rank].detach().double().cpu()
        factors[name] = _exact_factors(delta + scaling * (b @ a))
    state = {}
    for key, value in get_peft_model_state_dict(peft_model, adapter_name=adapter_name).items():
        module = _module_name(key)
        if module in factors:
            b, a = factors[module]
            value = a if ".lora_A." in key else b
        state[key] = value.detach().float().cpu().contiguous()
    save_file(state, str(folder / "adapter_model.safetensors"))
    config = copy.deepcopy(peft_model.peft_config[adapter_name])
    config.rank_pattern = {name: int(a.shape[0]) for name, (_, a) in factors.items()}
    config.alpha_pattern = dict(config.rank_pattern)  # scaling alpha / r = 1
    config.use_rslora = False
    config.inference_mode = True
    config.save_pretrained(str(folder))
    return folder


def _exact_factors(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, A)`` with ``B A = matrix`` at its numerical rank (at least 1), from the SVD."""
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    tolerance = max(matrix.shape) * torch.finfo(torch.float32).eps * float(s[0])
    rank = max(1, int((s > tolerance).sum()))
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]
