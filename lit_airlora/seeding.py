"""Seeds in one place: the run seed, and generators derived from integer keys.

The run seed is explicit where a part is given one, otherwise the seed of ``seed_everything``.

LightningCLI calls ``seed_everything`` before it builds the model, datamodule and callbacks, and
Lightning records the seed in ``PL_GLOBAL_SEED``; parts left with ``seed: null`` take it from
there, so one ``seed_everything:`` line in the base config reseeds the whole run.
"""

from __future__ import annotations

import os

import torch

SEED_ENV = "PL_GLOBAL_SEED"
_MASK64 = (1 << 64) - 1
_GOLDEN64 = 0x9E3779B97F4A7C15
#: Key separating the round seed from other seeds derived from the same base seed.
_ROUND_STREAM = 0x50D7


def resolve_seed(seed: int | None) -> int:
    """``seed`` if set, else the run's ``seed_everything`` seed, else 0 (no global seed set)."""
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"`seed` ({seed!r}) must be a non-negative integer or null.")
        return seed
    return int(os.environ.get(SEED_ENV, 0))


def _splitmix64(x: int) -> int:
    """One step of the SplitMix64 mixer (Steele et al., 2014): a bijection on 64-bit ints."""
    x = (x + _GOLDEN64) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(*keys: int) -> int:
    """A 63-bit seed mixing integer keys, e.g. ``derive_seed(run_seed, client_id, 7)``.

    Identical in every process (unlike ``hash``); nearby keys give unrelated seeds, and the
    order matters. Randomness that must agree across DDP ranks and resumes (client sampling,
    channels, noise, sparsification) comes from generators seeded this way, never from a
    global RNG.
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


def round_seed(base_seed: int, round_idx: int) -> int:
    """The seed all ranks share for round ``round_idx``'s randomness."""
    return derive_seed(base_seed, _ROUND_STREAM, round_idx)
