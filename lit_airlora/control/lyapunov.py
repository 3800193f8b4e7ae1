"""Lyapunov drift-plus-penalty choice of the sparsity ratio and FDMA shares (TSFA's online stage).

Neely's drift-plus-penalty turns the long-term constraint ``avg_t T^t <= T_bar`` into a virtual
queue ``Q(t+1) = max(Q(t) + T^t - T_bar, 0)``; each round minimises ``V E_sp(rho) + Q(t) T(rho)``
over the candidates, where ``T(rho)`` is the equalised FDMA round latency for the payload that
``rho`` leaves. A larger ``V`` favours accuracy (small sparsification error) and lets the queue
grow larger before it pulls the latency back under budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lit_airlora.control.fdma import equalise_finish_time


@dataclass(frozen=True)
class RoundPlan:
    """One round's choice after scheduling.

    Attributes:
        index: Position of the chosen candidate in the grid.
        latency_s: Equalised round latency of the scheduled clients.
        shares: ``[K_scheduled]`` bandwidth shares of the scheduled clients (sum <= 1).
        kept: ``[K]`` bool, the clients scheduled.
    """

    index: int
    latency_s: float
    shares: Tensor
    kept: Tensor


def plan_round(
    errors: Tensor,
    payload_bits: Tensor,
    compute_s: Tensor,
    snr: Tensor,
    bandwidth_hz: float,
    queue_s: float,
    penalty_weight: float,
    budget_s: float | None = None,
    min_clients: int = 1,
) -> RoundPlan:
    """Bandwidth-aware scheduling (with ``budget_s``), then the drift-plus-penalty choice.

    Scheduling drops the clients that keep even the smallest payload of the grid from fitting
    in ``budget_s`` (deep fades), so the controller trades accuracy for latency only over
    clients that can meet the budget; rounds may still exceed it when the queue allows.
    Arguments as in :func:`drift_plus_penalty` and :func:`schedule_clients`; ``budget_s=None``
    keeps every client.
    """
    kept = torch.ones(snr.numel(), dtype=torch.bool)
    if budget_s is not None:
        smallest = float(payload_bits.min())
        kept = schedule_clients(smallest, compute_s, snr, bandwidth_hz, budget_s, min_clients)
    choice = drift_plus_penalty(
        errors, payload_bits, compute_s[kept], snr[kept], bandwidth_hz, queue_s, penalty_weight
    )
    return RoundPlan(choice.index, choice.latency_s, choice.shares, kept)


@dataclass(frozen=True)
class Decision:
    """One round's choice.

    Attributes:
        index: Position of the chosen candidate in the grid.
        latency_s: Equalised round latency of the chosen candidate.
        shares: ``[K]`` bandwidth shares (sum <= 1).
    """

    index: int
    latency_s: float
    shares: Tensor


def drift_plus_penalty(
    errors: Tensor,
    payload_bits: Tensor,
    compute_s: Tensor,
    snr: Tensor,
    bandwidth_hz: float,
    queue_s: float,
    penalty_weight: float,
) -> Decision:
    """The candidate minimising ``V E_sp + Q T`` (ties: the shorter round).

    Args:
        errors: ``[G]`` modelled sparsification error ``E_sp`` of each candidate.
        payload_bits: ``[G]`` bits each client uploads under each candidate.
        compute_s: ``[K]`` computation time per client.
        snr: ``[K]`` full-band SNR per client this round (linear).
        bandwidth_hz: Total bandwidth ``W``.
        queue_s: Virtual queue ``Q(t)``.
        penalty_weight: ``V``.
    """
    latency_s, shares = equalise_finish_time(payload_bits, compute_s, snr, bandwidth_hz)
    objective = penalty_weight * errors.double() + queue_s * latency_s
    # lexicographic (objective, latency): among equal objectives prefer the shorter round.
    order = sorted(range(len(objective)), key=lambda g: (float(objective[g]), float(latency_s[g])))
    best = order[0]
    return Decision(best, float(latency_s[best]), shares[best])


def update_queue(queue_s: float, latency_s: float, budget_s: float) -> float:
    """``Q(t+1) = max(Q(t) + T^t - T_bar, 0)``."""
    return max(queue_s + latency_s - budget_s, 0.0)


def schedule_clients(
    payload_bits: float,
    compute_s: Tensor,
    snr: Tensor,
    bandwidth_hz: float,
    budget_s: float,
    min_clients: int,
) -> Tensor:
    """Bandwidth-aware scheduling: drop the hungriest clients until the round fits ``budget_s``.

    While the equalised latency exceeds the budget and more than ``min_clients`` remain, the
    client needing the largest bandwidth share is dropped.

    Returns:
        ``[K]`` bool, True for the clients kept.
    """
    kept = torch.ones(snr.numel(), dtype=torch.bool)
    payload = torch.tensor([float(payload_bits)])
    while int(kept.sum()) > min_clients:
        latency_s, shares = equalise_finish_time(payload, compute_s[kept], snr[kept], bandwidth_hz)
        if float(latency_s[0]) <= budget_s:
            break
        kept[kept.nonzero()[int(shares[0].argmax())]] = False
    return kept
