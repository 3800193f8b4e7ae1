"""peft's rule for which modules a ``LoraConfig`` adapts, on module names alone (no torch).

The pre-flight checks decide from a model's weight names whether ``target_modules`` match a
layer before anything is imported, and ``check_targets`` decides it again on the loaded model:
both use this one rule, tested against peft's own ``check_target_module_exists``. Hand-written
because peft's function needs peft (5 s of imports) and a config object.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

#: Classification heads peft's ``SEQ_CLS`` task trains in full (never wrapped with LoRA).
SEQ_CLS_HEADS = ("classifier", "score")


def is_target(
    key: str,
    target_modules: str | Sequence[str],
    exclude_modules: str | Sequence[str] | None = None,
    layers_to_transform: int | Sequence[int] | None = None,
    layers_pattern: str | Sequence[str] | None = None,
    modules_to_save: Sequence[str] | None = None,
) -> bool:
    """Whether peft adapts the module named ``key`` (a dotted name of ``named_modules()``).

    Args:
        key: The module's full dotted name, e.g. ``"model.layers.0.self_attn.q_proj"``.
        target_modules: Names (exact, or a ``.name`` suffix) or one regular expression
            (``re.fullmatch`` over the full name), as in peft.
        exclude_modules: Names never adapted, with the same rule.
        layers_to_transform: Layer indices to adapt (list targets only), as in peft.
        layers_pattern: Name(s) of the layer list before the index (``"layers"``, ``"h"``).
        modules_to_save: Modules trained in full; never adapted.
    """
    if exclude_modules and _named(key, exclude_modules):
        return False
    if modules_to_save and any(re.match(rf"(^|.*\.){m}($|\..*)", key) for m in modules_to_save):
        return False
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, key) is not None
    if key in target_modules:
        return True
    if not any(key.endswith(f".{t}") for t in target_modules):
        return False
    return _in_layers(key, layers_to_transform, layers_pattern)


def _named(key: str, names: str | Sequence[str]) -> bool:
    if isinstance(names, str):
        return re.fullmatch(names, key) is not None
    return key in names or any(key.endswith(f".{n}") for n in names)


def _in_layers(key: str, layers: int | Sequence[int] | None, pattern) -> bool:
    if layers is None or (not isinstance(layers, int) and len(layers) == 0):
        return True
    match = None
    if not pattern:
        match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", key)  # the first numbered part
    else:
        for name in [pattern] if isinstance(pattern, str) else pattern:
            match = re.match(rf"(?:^|.*?\.){name}\.(?P<idx>\d+)\.", key)
            if match is not None:
                break
    if match is None:
        return False
    index = int(match.group("idx"))
    return index == layers if isinstance(layers, int) else index in layers


def rule_of(lora: Any, seq_cls: bool = False) -> dict[str, Any]:
    """The keyword arguments of :func:`is_target` for LoRA settings, a peft ``LoraConfig`` or
    either one's YAML mapping; ``seq_cls``: peft's ``SEQ_CLS`` task (its heads are never
    adapted)."""
    if isinstance(lora, dict):
        get = lora.get
    else:

        def get(name: str) -> Any:
            return getattr(lora, name, None)

    saved = [*(get("modules_to_save") or []), *(SEQ_CLS_HEADS if seq_cls else ())]
    rule = {name: get(name) for name in _RULE_FIELDS}
    return {**rule, "modules_to_save": saved or None}


_RULE_FIELDS = ("target_modules", "exclude_modules", "layers_to_transform", "layers_pattern")


def check_layers(
    layers: dict[str, tuple[int, int]],
    rule: dict[str, Any],
    max_rank: int,
    where: str = "lora",
    rank_name: str = "max_rank",
) -> None:
    """Raise ``ValueError`` if a target adapts no layer or ``max_rank`` exceeds a layer's width.

    Args:
        layers: ``name -> (d_in, d_out)`` of the model's linear (or ``Conv1D``) layers.
        rule: :func:`rule_of`'s keyword arguments (``target_modules`` first).
        max_rank: The rank allocated in every adapted layer.
        where: Dotted path of the LoRA settings in messages (``"model.init_args.lora"``).
        rank_name: The rank's argument name in messages (``"r"`` for a peft ``LoraConfig``).
    """
    targets = rule["target_modules"]
    missing = _unmatched(layers, rule)
    if missing:
        names = sorted({n.rsplit(".", 1)[-1] for n in layers})
        excluded = " after `exclude_modules`" if rule.get("exclude_modules") else ""
        raise ValueError(
            f"`{where}.target_modules` {missing!r} match no linear layer of the model"
            f"{excluded} (given: {targets!r}); its linear layers are named {names}: use some of "
            "them (a name matches itself or a '.name' suffix of a full name, a string is a regex)."
        )
    for name, (d_in, d_out) in layers.items():
        if is_target(name, **rule) and max_rank > min(d_in, d_out):
            raise ValueError(
                f"`{where}.{rank_name}` ({max_rank}) exceeds the width of `{name}` "
                f"({d_in} -> {d_out}); use {rank_name} <= {min(d_in, d_out)}."
            )


def _unmatched(keys: Iterable[str], rule: dict[str, Any]) -> list:
    """The entries of ``target_modules`` (or the one pattern) that adapt none of ``keys``."""
    keys, targets = list(keys), rule["target_modules"]
    if isinstance(targets, str):
        return [] if any(is_target(k, **rule) for k in keys) else [targets]
    return [
        t for t in targets if not any(is_target(k, **{**rule, "target_modules": [t]}) for k in keys)
    ]
