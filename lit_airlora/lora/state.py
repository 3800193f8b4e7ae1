"""Strict loading of adapter checkpoints: every key but the frozen base weights must match."""

from __future__ import annotations

from lit_airlora.errors import ConfigError

_SHOWN = 3


def check_state_keys(expected: set[str], given: set[str], owner: str) -> None:
    """Raise if ``given`` (a checkpoint's keys) misses or adds keys beyond the frozen base.

    A checkpoint holds the adapter (and trainable biases), not the frozen base model, so base
    weights present in ``given`` are unexpected too: the checkpoint is from another setup.
    """
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if not (missing or unexpected):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[:_SHOWN]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:_SHOWN]})")
    raise ConfigError(
        f"The checkpoint does not match this {owner}: adapter keys {'; '.join(parts)}. It was "
        "saved with another model, `lora` targets or `adapter_name`; use the same settings."
    )
