"""What ``lora:`` accepts: the short settings, a peft ``LoraConfig``, or their checkpoint dicts.

A ``LoraConfig`` is used as given (rsLoRA, bias, ``exclude_modules``, ``layers_to_transform``,
``alpha_pattern``, ``modules_to_save`` ...) with ``r`` as the ``max_rank`` allocation; the
options the rank masks cannot honour are refused by name. Either form is stored as builtins in
the checkpoint's hyperparameters and read back from them.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from lit_airlora.lora.config import LoRASettings

#: peft ``LoraConfig`` fields used as given; every other field must keep peft's default (ranks
#: are masks over one ``max_rank`` allocation, the base weights stay as loaded, and only LoRA
#: factors and ``modules_to_save`` cross the links).
PEFT_FIELDS_USED = frozenset(
    "r lora_alpha lora_dropout target_modules exclude_modules use_rslora bias init_lora_weights "
    "layers_to_transform layers_pattern alpha_pattern modules_to_save fan_in_fan_out task_type "
    "inference_mode peft_type base_model_name_or_path revision auto_mapping peft_version".split()
)
#: Initialisations that leave the base weights as loaded (PiSSA, OLoRA, LoftQ ... rewrite them).
_PLAIN_INITS = (True, False, "gaussian")


def lora_from_any(lora: Any) -> tuple[LoRASettings, Any]:
    """``(settings, peft LoraConfig or None)`` from the short settings, a peft ``LoraConfig``,
    or their dicts (checkpoint hyperparameters; a dict with ``peft_type`` is a ``LoraConfig``)."""
    if lora is None:
        return LoRASettings(), None
    if isinstance(lora, dict):
        lora = _peft_from_dict(lora) if "peft_type" in lora else _settings_from_dict(lora)
    if isinstance(lora, LoRASettings):
        return lora, None
    if type(lora).__name__ == "LoraConfig":
        return settings_of_peft(lora), lora
    raise TypeError(
        f"`lora` ({type(lora).__name__}) must be LoRA settings (target_modules, max_rank, ...) "
        "or a peft LoraConfig."
    )


def settings_of_peft(config) -> LoRASettings:
    """The short settings a peft ``LoraConfig`` amounts to; refuses what the masks can't do."""
    from peft import LoraConfig

    defaults = LoraConfig()
    for name in sorted(set(LoraConfig.__dataclass_fields__) - PEFT_FIELDS_USED):
        if getattr(config, name) != getattr(defaults, name):
            raise ValueError(
                f"`lora.{name}` ({getattr(config, name)!r}) is not supported: ranks are masks over "
                f"one max_rank allocation and only LoRA factors and modules_to_save are federated. "
                f"Leave it at peft's default ({getattr(defaults, name)!r})."
            )
    if config.init_lora_weights not in _PLAIN_INITS:
        raise ValueError(
            f"`lora.init_lora_weights` ({config.init_lora_weights!r}) rewrites the base weights, "
            f"which checkpoints do not hold; use one of {list(_PLAIN_INITS)}."
        )
    targets = config.target_modules
    if not targets or isinstance(targets, str):
        raise ValueError(f"`lora.target_modules` ({targets!r}) must be a list of module names.")
    exclude = config.exclude_modules
    return LoRASettings(
        target_modules=sorted(targets),
        max_rank=int(config.r),
        alpha=float(config.lora_alpha),
        dropout=float(config.lora_dropout),
        rslora=bool(config.use_rslora),
        bias=str(config.bias),
        exclude_modules=sorted(exclude) if isinstance(exclude, (set, list)) else exclude,
    )


def lora_hparams(settings: LoRASettings, peft_config) -> dict:
    """Builtins for the checkpoint: the short settings, or the whole ``LoraConfig`` if given."""
    if peft_config is None:
        return asdict(settings)
    return json.loads(json.dumps(peft_config.to_dict(), default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def _settings_from_dict(values: dict) -> LoRASettings:
    known = LoRASettings.__dataclass_fields__
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(
            f"`lora` has unknown settings {unknown}; valid: {sorted(known)} (or a peft "
            "LoraConfig's fields with `peft_type: LORA`)."
        )
    return LoRASettings(**values)


def _peft_from_dict(values: dict):
    from peft import LoraConfig

    known = LoraConfig.__dataclass_fields__
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"`lora` has fields {unknown} that peft's LoraConfig does not know.")
    return LoraConfig(**{k: v for k, v in values.items() if k not in ("peft_type", "peft_version")})
