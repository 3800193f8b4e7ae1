"""Upload encoders: the base classes, the identity, and the sparsity ratio they share."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lit_airlora.federated.upload import Upload


class Encoder:
    """Compresses one client's upload; chosen from YAML by ``class_path``.

    Subclasses override :meth:`encode` and list in ``stat_names`` the per-upload statistics it
    returns (the encode callback averages them over the round's clients and logs them).
    """

    stat_names: tuple[str, ...] = ()

    def encode(
        self, upload: Upload, global_adapter: dict[str, Tensor], generator: torch.Generator
    ) -> tuple[Upload, dict[str, float]]:
        """Return the encoded upload (a new value) and its statistics.

        Args:
            upload: One client's update (local minus global); never mutated.
            global_adapter: Global adapter at the start of the round, name -> tensor.
            generator: This client's generator for the round (random encoders only).
        """
        raise NotImplementedError


class NoCompression(Encoder):
    """Sends the active-rank block of every tensor as float32 (the uncompressed baseline)."""

    def encode(self, upload, global_adapter, generator):
        return upload, {}


class SparseEncoder(Encoder):
    """An encoder with a sparsity ratio ``rho``: the fraction of the payload it drops.

    Args:
        rho: Fraction dropped, in ``[0, 1)``; a controller may change it each round.
    """

    def __init__(self, rho: float = 0.5):
        self.rho = check_rho(rho)

    def set_rho(self, rho: float) -> None:
        """Change the sparsity ratio (a controller such as TSFA calls this every round)."""
        self.rho = check_rho(rho)


def check_rho(rho: float) -> float:
    """Return ``rho`` as a float, or raise if it is not a valid sparsity ratio."""
    if not 0.0 <= float(rho) < 1.0:
        raise ValueError(
            f"`rho` ({rho}) must be in [0, 1): the fraction of the payload dropped "
            "(0 sends everything)."
        )
    return float(rho)


def keep_count(total: int, rho: float) -> int:
    """``ceil((1 - rho) * total)``: how many of ``total`` items a ratio ``rho`` keeps."""
    # round() first so that e.g. (1 - 0.7) * 10 = 3.0000000000000004 keeps 3, not 4.
    return min(total, math.ceil(round((1.0 - rho) * total, 9)))
