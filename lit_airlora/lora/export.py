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
