"""Properties shared by all rank policies: ranks in range, budgets respected, clear errors."""

from __future__ import annotations

import pytest
import torch

from lit_airlora.channel.costs import shannon_rate_bps
from lit_airlora.policy import costs
from lit_airlora.policy.aircomp_mse import SisoAirCompMSE
from lit_airlora.policy.backtracking import BacktrackingRankSelection
from lit_airlora.policy.capacity_greedy import CapacityGreedyUniform
from lit_airlora.policy.fixed import FixedRank
from lit_airlora.policy.importance import ImportanceBudget
from lit_airlora.policy.observation import check_required
from tests.policy.policy_helpers import observation, random_observation


def policies(rank_min: int):
    return [
        FixedRank(rank=rank_min),
        CapacityGreedyUniform(rank_min=rank_min, bandwidth_hz=1e4, latency_budget_s=0.1),
        ImportanceBudget(budget_fraction=0.5, rank_min=rank_min),
        BacktrackingRankSelection(SisoAirCompMSE(channel_uses=500), rank_min=rank_min, lr=0.1),
    ]


def test_ranks_stay_in_range_on_random_observations():
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        obs = random_observation(generator)
        rank_min = int(torch.randint(1, obs.max_rank + 1, (), generator=generator))
        for policy in policies(rank_min):
            ranks = policy.act(obs)
            assert set(ranks) == set(obs.shapes), type(policy).__name__
            assert all(rank_min <= r <= obs.max_rank for r in ranks.values()), (
                type(policy).__name__,
                ranks,
            )


def test_capacity_greedy_fits_and_is_maximal():
    generator = torch.Generator().manual_seed(1)
    policy = CapacityGreedyUniform(rank_min=1, bandwidth_hz=2e4, latency_budget_s=0.5)
    checked = 0
    for _ in range(100):
        obs = random_observation(generator)
        rank = next(iter(policy.act(obs).values()))
        budget = float(shannon_rate_bps(2e4, obs.snr_db).min()) * 0.5
        bits = _uniform_bits(obs.shapes)
        if bits(1) > budget:
            assert rank == 1  # nothing fits: rank_min with a warning
            continue
        assert bits(rank) <= budget
        assert rank == obs.max_rank or bits(rank + 1) > budget
        checked += 1
    assert checked > 20


def _uniform_bits(shapes):
    return lambda rank: costs.payload_bits(dict.fromkeys(shapes, rank), shapes)


def test_capacity_greedy_strict_raises_when_nothing_fits():
    policy = CapacityGreedyUniform(rank_min=2, bandwidth_hz=1.0, strict=True)
    with pytest.raises(RuntimeError, match="rank_min"):
        policy.act(observation({"a": (8, 8)}, [0.0]))


def test_importance_budget_respected_and_follows_scores():
    generator = torch.Generator().manual_seed(2)
    for _ in range(30):
        obs = random_observation(generator)
        budget = int(
            torch.randint(
                len(obs.shapes), len(obs.shapes) * obs.max_rank + 1, (), generator=generator
            )
        )
        ranks = ImportanceBudget(total_rank_budget=budget).act(obs)
        assert sum(ranks.values()) == budget


def test_importance_budget_gives_rank_to_important_module():
    obs = observation({"a": (8, 8), "b": (8, 8)}, [0.0], max_rank=4)
    obs.importance = {"a": torch.tensor([4.0, 3.0, 2.0, 1.0]), "b": torch.tensor([0.5, 0.1, 0, 0])}
    assert ImportanceBudget(total_rank_budget=5).act(obs) == {"a": 4, "b": 1}
    assert ImportanceBudget(total_rank_budget=5, rank_min=2).act(obs) == {"a": 3, "b": 2}


@pytest.mark.parametrize(
    "make",
    [
        lambda: FixedRank(rank=9),
        lambda: CapacityGreedyUniform(rank_min=9),
        lambda: ImportanceBudget(budget_fraction=1.0, rank_min=9),
        lambda: BacktrackingRankSelection(SisoAirCompMSE(10), rank_min=9),
    ],
)
def test_rank_min_above_max_rank_is_a_clear_error(make):
    obs = observation({"a": (16, 16)}, [10.0], max_rank=8)
    obs.importance = {"a": torch.ones(8)}
    obs.update_spectrum = {"a": torch.ones(8)}
    with pytest.raises(ValueError, match=r"must be <= `max_rank` \(8\)"):
        make().act(obs)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: FixedRank(rank=0), "`rank`"),
        (lambda: CapacityGreedyUniform(rank_min=0), "`rank_min`"),
        (lambda: CapacityGreedyUniform(bandwidth_hz=-1.0), "`bandwidth_hz`"),
        (lambda: ImportanceBudget(), "exactly one"),
        (lambda: ImportanceBudget(total_rank_budget=4, budget_fraction=0.5), "exactly one"),
        (lambda: ImportanceBudget(budget_fraction=1.5), "`budget_fraction`"),
        (lambda: SisoAirCompMSE(channel_uses=0), "`channel_uses`"),
        (lambda: BacktrackingRankSelection(SisoAirCompMSE(10), lr=0.0), "`lr`"),
    ],
)
def test_bad_arguments_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_importance_budget_below_rank_min_total_is_an_error():
    obs = observation({"a": (8, 8), "b": (8, 8)}, [0.0], max_rank=4)
    obs.importance = {"a": torch.ones(4), "b": torch.ones(4)}
    with pytest.raises(ValueError, match=r"`total_rank_budget` \(3\)"):
        ImportanceBudget(total_rank_budget=3, rank_min=2).act(obs)


def test_missing_observation_names_it_and_its_provider():
    policy = CapacityGreedyUniform()
    with pytest.raises(ValueError, match=r"requires the observation `snr_db`.*large_scale"):
        check_required(policy.required_observations, set(), "CapacityGreedyUniform")
    check_required(policy.required_observations, {"snr_db"}, "CapacityGreedyUniform")


def test_backtracking_requires_its_mse_model_observations():
    policy = BacktrackingRankSelection(SisoAirCompMSE(10))
    assert set(policy.required_observations) == {"snr_db", "update_spectrum"}


def test_stateless_policies_round_trip_state():
    for policy in policies(1):
        state = policy.state_dict()
        policy.load_state_dict(state)
        assert state == {}
