"""Drift-plus-penalty: the virtual queue holds the average latency to the budget."""

import pytest
import torch

from lit_airlora.control.fdma import equalise_finish_time
from lit_airlora.control.lyapunov import plan_round, schedule_clients, update_queue


def _run(num_rounds, budget_s, fading, budget_for_scheduling=None):
    """Rounds of the controller on a synthetic trace; returns (avg latency, final queue, rhos)."""
    rhos = torch.linspace(0, 0.9, 10, dtype=torch.float64)
    errors = rhos**2  # any increasing error model
    payload = 1e6 * (1 - rhos) + 1e3
    compute_s = torch.full((5,), 0.05, dtype=torch.float64)
    mean_snr = torch.tensor([1.0, 3.0, 10.0, 30.0, 100.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    queue_s, total_s, chosen = 0.0, 0.0, []
    for _ in range(num_rounds):
        snr = mean_snr * fading(g)
        plan = plan_round(errors, payload, compute_s, snr, 1e6, queue_s, 1.0, budget_for_scheduling)
        queue_s = update_queue(queue_s, plan.latency_s, budget_s)
        total_s += plan.latency_s
        chosen.append(float(rhos[plan.index]))
    return total_s / num_rounds, queue_s, chosen


def test_virtual_queue_keeps_time_average_latency_at_the_budget():
    """500 rounds, SNR = mean x U(0.2, 1.8) (seed 0). The queue is mean-rate stable (Q(N) / N
    under 1% of T_bar: a controller that ignored the queue would let it grow by the excess
    every round) and the average latency is within 1% of T_bar, while always sending
    everything (rho = 0) would average well over it."""
    budget_s = 1.0

    def fading(g):
        return 0.2 + 1.6 * torch.rand(5, dtype=torch.float64, generator=g)

    average_s, queue_s, chosen = _run(500, budget_s, fading)
    assert queue_s / 500 < 0.01 * budget_s
    assert average_s <= 1.01 * budget_s
    assert min(chosen) == 0.0 and max(chosen) >= 0.5  # it trades accuracy for latency
    mean_snr = torch.tensor([1.0, 3.0, 10.0, 30.0, 100.0], dtype=torch.float64)
    dense_s, _ = equalise_finish_time(
        torch.tensor([1e6 + 1e3]), torch.full((5,), 0.05), mean_snr, 1e6
    )
    assert float(dense_s[0]) > 1.2 * budget_s


def test_scheduling_keeps_the_average_at_the_budget_under_rayleigh_fading():
    """Rayleigh fading makes a weak client's latency heavy-tailed (its mean diverges); dropping
    clients whose deep fade keeps even the sparsest round over budget restores the queue's
    guarantee: the queue stays mean-rate stable and the average within 2% of T_bar (300
    rounds, seed 0)."""

    def fading(g):
        return torch.empty(5, dtype=torch.float64).exponential_(generator=g)

    average_s, queue_s, _ = _run(300, 1.0, fading, budget_for_scheduling=1.0)
    assert queue_s / 300 < 0.01
    assert average_s <= 1.02


def test_queue_update():
    assert update_queue(2.0, 1.5, 1.0) == 2.5
    assert update_queue(0.2, 0.5, 1.0) == 0.0


def test_zero_queue_picks_the_smallest_error_and_large_queue_the_shortest_round():
    errors = torch.tensor([0.0, 0.1, 0.5], dtype=torch.float64)
    payload = torch.tensor([3e6, 2e6, 1e6], dtype=torch.float64)
    args = (torch.zeros(2, dtype=torch.float64), torch.tensor([10.0, 10.0]), 1e6)
    assert plan_round(errors, payload, *args, queue_s=0.0, penalty_weight=1.0).index == 0
    assert plan_round(errors, payload, *args, queue_s=1e3, penalty_weight=1.0).index == 2


def test_scheduling_drops_the_weakest_client_until_the_round_fits():
    snr = torch.tensor([0.01, 10.0, 10.0], dtype=torch.float64)
    compute_s = torch.zeros(3, dtype=torch.float64)
    full, _ = equalise_finish_time(torch.tensor([1e6]), compute_s, snr, 1e6)
    budget_s = float(full[0]) / 2
    kept = schedule_clients(1e6, compute_s, snr, 1e6, budget_s=budget_s, min_clients=1)
    assert kept.tolist() == [False, True, True]
    assert schedule_clients(1e6, compute_s, snr, 1e6, 0.0, min_clients=2).sum() == 2
    # In a plan, scheduling looks at the smallest payload; the choice then runs on the rest.
    errors = torch.tensor([0.0, 0.5], dtype=torch.float64)
    payload = torch.tensor([4e6, 1e6], dtype=torch.float64)
    plan = plan_round(errors, payload, compute_s, snr, 1e6, 0.0, 1.0, budget_s=budget_s)
    assert plan.kept.tolist() == [False, True, True] and plan.shares.numel() == 2
    assert plan.index == 0  # empty queue: the accurate choice, even over budget
    rest, _ = equalise_finish_time(payload[:1], compute_s[1:], snr[1:], 1e6)
    assert plan.latency_s == pytest.approx(float(rest[0]))
