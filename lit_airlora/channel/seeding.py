"""Explicit random generators for the channel: seeds derived from integer keys, and Sionna draws.

Channel randomness must be identical on every DDP rank and reproducible after a resume, so it
never comes from a global RNG: each draw uses a ``torch.Generator`` seeded from integer keys
(run seed, round, client id, a callback seed) through :func:`derive_seed`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

_MASK64 = (1 << 64) - 1
_GOLDEN64 = 0x9E3779B97F4A7C15
# Sionna's generator registry is process-global: one swap at a time.
_REGISTRY_LOCK = threading.RLock()


def _splitmix64(x: int) -> int:
    """One step of the SplitMix64 mixer (Steele et al., 2014): a bijection on 64-bit ints."""
    x = (x + _GOLDEN64) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(*keys: int) -> int:
    """A 63-bit seed mixing integer keys, e.g. ``derive_seed(run_seed, client_id, 7)``.

    Nearby keys give unrelated seeds (``torch.Generator.manual_seed`` on consecutive integers
    gives correlated-looking but valid streams; mixing removes any doubt), and the order matters.
    """
    state = _GOLDEN64
    for key in keys:
        state = _splitmix64(state ^ (int(key) & _MASK64))
    return state >> 1


def make_generator(*keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded by :func:`derive_seed` of ``keys``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(*keys))
    return generator


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
