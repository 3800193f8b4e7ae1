"""AirLLM's cost model, including the paper's feasibility arithmetic on OPT-1.3B shapes."""

from __future__ import annotations

import math

import pytest
import torch

from lit_airlora.channel.costs import shannon_rate_bps
from lit_airlora.policy import costs
from lit_airlora.policy.capacity_greedy import CapacityGreedyUniform
from tests.policy.policy_helpers import observation, opt_1p3b_shapes

BANDWIDTH_HZ = 100e6
LATENCY_S = 1.0


def test_shannon_capacity_closed_form():
    capacity = shannon_rate_bps(1e6, torch.tensor([0.0, 10.0]))
    assert capacity.tolist() == pytest.approx([1e6, 1e6 * math.log2(11.0)])


def test_payload_bits_closed_form():
    shapes = {"a": (4, 6), "b": (10, 2)}
    assert costs.payload_bits({"a": 2, "b": 3}, shapes) == 32 * (2 * 11 + 3 * 13)
    assert costs.payload_bits({"a": 2, "b": 3}, shapes, 16, 0) == 16 * (2 * 10 + 3 * 12)


def test_opt_1p3b_has_144_adapters():
    shapes = opt_1p3b_shapes()
    assert len(shapes) == 144
    assert sum(costs.values_per_rank(shapes).values()) == 24 * (4 * 4097 + 2 * 10241)


@pytest.mark.parametrize(
    ("snr_db", "feasible"), [(-5, False), (0, False), (5, False), (10, True), (15, True)]
)
def test_every_rank_8_feasibility_matches_airllm(snr_db, feasible):
    shapes = opt_1p3b_shapes()
    bits = costs.payload_bits(dict.fromkeys(shapes, 8), shapes)
    capacity = shannon_rate_bps(BANDWIDTH_HZ, snr_db)
    cost = float(costs.normalised_cost(bits, capacity, LATENCY_S))
    assert (cost <= 1.0) == feasible


def test_average_feasible_rank_at_minus_5_db_is_1_4():
    # The paper's "average feasible rank of about 1.4" at -5 dB is the budget-filling rank:
    # C tau / (32 sum_l (d_in + d_out + 1)) = 39.64 Mbit / 28.32 Mbit per rank = 1.3999.
    shapes = opt_1p3b_shapes()
    capacity = float(shannon_rate_bps(BANDWIDTH_HZ, -5.0))
    rank = costs.max_uniform_rank(shapes, capacity, LATENCY_S)
    assert rank == pytest.approx(1.4, abs=0.005)
    assert costs.largest_feasible_uniform_rank(shapes, capacity, LATENCY_S) == 1


@pytest.mark.parametrize(("snr_db", "expected"), [(-5, 1), (0, 3), (5, 7), (10, 8), (15, 8)])
def test_capacity_greedy_on_opt_1p3b(snr_db, expected):
    shapes = opt_1p3b_shapes()
    policy = CapacityGreedyUniform(rank_min=1, bandwidth_hz=BANDWIDTH_HZ, latency_budget_s=1.0)
    ranks = policy.act(observation(shapes, [snr_db]))
    assert set(ranks.values()) == {expected}
    assert policy.metrics()["cost"] <= 1.0


def test_largest_feasible_uniform_rank_exact_boundary():
    shapes = {"a": (3, 4)}  # 8 values per rank with the extra singular value
    assert costs.largest_feasible_uniform_rank(shapes, 32 * 8 * 5, 1.0) == 5
    assert costs.largest_feasible_uniform_rank(shapes, 32 * 8 * 5 - 1e-6, 1.0) == 4


def test_airllm_reward():
    assert costs.airllm_reward(0.5, 0.8) == pytest.approx(-0.5 - 0.08)
    assert costs.airllm_reward(0.5, 2.0) == pytest.approx(-20.0 - 0.2)
