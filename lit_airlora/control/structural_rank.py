"""TSFA's offline stage: the structural LoRA rank that minimises a convergence-bound surrogate."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RankBound:
    """Rank-dependent terms of the convergence bound, from given constants.

    ``J(r) = approx_coeff * r^(-approx_decay) + (covariance_coeff + payload_coeff) * r``: the
    LoRA approximation error falls with the rank (a power law, as for a spectrum decaying like
    ``i^-(1 + decay)/2``), while the factor-covariance error of aggregating A and B separately and
    the per-round payload (hence latency) grow linearly with it. Its continuous minimiser is
    ``r = (decay * approx_coeff / (covariance_coeff + payload_coeff))^(1 / (1 + decay))``.

    Args:
        approx_coeff: Weight of the approximation term (> 0).
        approx_decay: Exponent of its decay with the rank (> 0).
        covariance_coeff: Weight of the covariance term per unit rank (>= 0).
        payload_coeff: Weight of the payload term per unit rank (>= 0).
    """

    approx_coeff: float = 1.0
    approx_decay: float = 1.0
    covariance_coeff: float = 0.01
    payload_coeff: float = 0.01

    def __post_init__(self):
        for name in ("approx_coeff", "approx_decay"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` ({getattr(self, name)}) must be > 0.")
        for name in ("covariance_coeff", "payload_coeff"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"`{name}` ({getattr(self, name)}) must be >= 0.")

    def __call__(self, rank: int) -> float:
        growth = (self.covariance_coeff + self.payload_coeff) * rank
        return self.approx_coeff * rank ** (-self.approx_decay) + growth


def structural_rank(bound: RankBound, max_rank: int) -> int:
    """``argmin_{1 <= r <= max_rank} J(r)`` (the smaller rank on ties)."""
    return min(range(1, max_rank + 1), key=lambda rank: (bound(rank), rank))
