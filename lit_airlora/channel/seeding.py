"""Sionna draws from explicit generators (seeds themselves come from :mod:`lit_airlora.seeding`).

Channel randomness must be identical on every DDP rank and reproducible after a resume, so it
never comes from a global RNG: each draw uses a ``torch.Generator`` seeded from integer keys
(run seed, round, client id, a callback seed) through :func:`lit_airlora.seeding.derive_seed`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

from lit_airlora.seeding import derive_seed, make_generator

__all__ = ["derive_seed", "make_generator", "sionna_device", "sionna_generator"]  # old import path

# Sionna's generator registry is process-global: one swap at a time.
_REGISTRY_LOCK = threading.RLock()


@contextlib.contextmanager
def sionna_generator(generator: torch.Generator) -> Iterator[None]:
    """Make Sionna blocks on ``generator.device`` draw from ``generator`` inside the block.

    Sionna 2.x blocks take no generator argument: every random draw goes through
    ``sionna.phy.config.torch_rng(device)`` (``Object.torch_rng`` delegates to it, as do the
    helpers in ``sionna.phy.channel.utils``). Setting ``sionna.phy.config.seed`` would reseed
    torch's global generators too (fighting Lightning's ``seed_everything``) and would give every
    client the same stream. So, for the duration of a call, we install our generator as the
    device's entry of Sionna's generator registry and restore the previous one afterwards; a lock
    serialises swaps between threads.
    """
    from sionna.phy import config

    device = sionna_device(generator.device)
    registry = config._torch_rngs
    if device not in registry:
        raise RuntimeError(
            f"Sionna has no generator for device {device!r} (known: {sorted(registry)})."
        )
    with _REGISTRY_LOCK:
        previous = registry[device]
        registry[device] = generator
        try:
            yield
        finally:
            registry[device] = previous


def sionna_device(device: torch.device | str) -> str:
    """Sionna's device string (``"cpu"``, ``"cuda:0"``) of a torch device."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else 0}"
    return device.type
