"""AirLLM's communication cost model: LoRA payload bits against a Shannon-capacity budget.

In AirLLM (Yang et al., arXiv 2507.11515; official code) "over the air" is capacity accounting:
the link is AWGN with Shannon capacity ``C = B log2(1 + SNR)``, the payload of an SVD-form
adapter of rank ``r_l`` on a ``d_in,l -> d_out,l`` layer is ``r_l (d_in,l + d_out,l + 1)``
values (``P``, ``Q`` and the ``r_l`` singular values) of ``bits_per_value`` bits, and a round is
feasible when the normalised cost ``c = bits / (C * tau) <= 1`` (``tau`` the latency budget).
Plain LoRA factors (``A``, ``B``) have no singular values: pass ``values_per_rank_extra=0``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

#: Module name -> ``(d_in, d_out)`` of the adapted linear layer.
Shapes = Mapping[str, tuple[int, int]]


def values_per_rank(shapes: Shapes, values_per_rank_extra: int = 1) -> dict[str, int]:
    """Values one rank component costs per module: ``d_in + d_out + values_per_rank_extra``."""
    return {name: d_in + d_out + values_per_rank_extra for name, (d_in, d_out) in shapes.items()}


def payload_bits(
    ranks: Mapping[str, int],
    shapes: Shapes,
    bits_per_value: int = 32,
    values_per_rank_extra: int = 1,
) -> int:
    """Bits of the adapter payload: ``bits_per_value * sum_l r_l (d_in + d_out + extra)``."""
    per_rank = values_per_rank(shapes, values_per_rank_extra)
    return bits_per_value * sum(int(ranks[name]) * per_rank[name] for name in ranks)


def normalised_cost(bits: float, capacity_bps: Tensor | float, latency_s: float) -> Tensor:
    """AirLLM's cost ``c = bits / (C * tau)``; the round is feasible when ``c <= 1``."""
    return bits / (torch.as_tensor(capacity_bps, dtype=torch.float64) * latency_s)


def max_uniform_rank(
    shapes: Shapes,
    capacity_bps: float,
    latency_s: float,
    bits_per_value: int = 32,
    values_per_rank_extra: int = 1,
) -> float:
    """The real-valued uniform rank that exactly fills the budget: ``C tau / bits per rank``.

    Any per-adapter allocation that fits has a cost-weighted mean rank at most this value, and
    the integer uniform rank that fits is its floor. For OPT-1.3B at -5 dB, 100 MHz and 1 s it
    is 1.40: the "average feasible rank of about 1.4" of the AirLLM paper.
    """
    bits_per_rank = bits_per_value * sum(values_per_rank(shapes, values_per_rank_extra).values())
    return float(capacity_bps) * latency_s / bits_per_rank


def largest_feasible_uniform_rank(
    shapes: Shapes,
    capacity_bps: float,
    latency_s: float,
    bits_per_value: int = 32,
    values_per_rank_extra: int = 1,
) -> int:
    """The largest integer ``r`` with ``payload_bits(r everywhere) <= C tau`` (0 if none)."""
    budget_bits = float(capacity_bps) * latency_s
    bits_per_rank = bits_per_value * sum(values_per_rank(shapes, values_per_rank_extra).values())
    rank = math.floor(budget_bits / bits_per_rank)
    # Guard the floor against float rounding at an exact boundary.
    while rank > 0 and rank * bits_per_rank > budget_bits:
        rank -= 1
    while (rank + 1) * bits_per_rank <= budget_bits:
        rank += 1
    return rank


def airllm_reward(
    task_loss: float,
    cost: float,
    lambda_comm: float = 0.1,
    infeasible_penalty: float = 10.0,
) -> float:
    """AirLLM's step reward: ``-loss - lambda c`` if feasible, else ``-penalty c - lambda c``.

    An infeasible step (``c > 1``) does no training step, so its loss is replaced by the
    penalty term.
    """
    if cost > 1.0:
        return -infeasible_penalty * cost - lambda_comm * cost
    return -task_loss - lambda_comm * cost
