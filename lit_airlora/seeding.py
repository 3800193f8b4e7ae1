"""The run seed: explicit where a part is given one, otherwise the seed of ``seed_everything``.

LightningCLI calls ``seed_everything`` before it builds the model, datamodule and callbacks, and
Lightning records the seed in ``PL_GLOBAL_SEED``; parts left with ``seed: null`` take it from
there, so one ``seed_everything:`` line in the base config reseeds the whole run.
"""

from __future__ import annotations

import os

SEED_ENV = "PL_GLOBAL_SEED"


def resolve_seed(seed: int | None) -> int:
    """``seed`` if set, else the run's ``seed_everything`` seed, else 0 (no global seed set)."""
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"`seed` ({seed!r}) must be a non-negative integer or null.")
        return seed
    return int(os.environ.get(SEED_ENV, 0))
