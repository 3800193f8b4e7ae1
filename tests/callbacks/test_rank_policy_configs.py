"""The rank-policy YAMLs: their callbacks build from the config (model and data not loaded)."""

from __future__ import annotations

import pytest

from lit_airlora.callbacks.rank_policy import RankPolicyCallback
from lit_airlora.policy.aircomp_mse import MimoAirCompMSE
from lit_airlora.policy.backtracking import BacktrackingRankSelection
from lit_airlora.policy.capacity_greedy import CapacityGreedyUniform
from tests.config_helpers import config_callbacks as _callbacks


@pytest.mark.parametrize(
    ("name", "policy_type"),
    [
        ("rank_capacity_greedy.yaml", CapacityGreedyUniform),
        ("airfl_lora_rank_selection.yaml", BacktrackingRankSelection),
    ],
)
def test_rank_policy_configs_build(name, policy_type):
    callbacks = [c for c in _callbacks(name) if isinstance(c, RankPolicyCallback)]
    assert len(callbacks) == 1 and isinstance(callbacks[0].policy, policy_type)


def test_rank_selection_plans_with_the_over_the_air_channel():
    callbacks = _callbacks("airfl_lora_rank_selection.yaml")
    policy = next(c for c in callbacks if isinstance(c, RankPolicyCallback)).policy
    air = next(c for c in callbacks if not isinstance(c, RankPolicyCallback))
    assert isinstance(policy.mse_model, MimoAirCompMSE)
    assert policy.mse_model.num_streams == air.num_streams
    assert policy.mse_model.fading.num_subcarriers == air.fading.num_subcarriers


AIRLLM_POLICIES = {
    "airllm_fixed_rank1.yaml": "FixedRank",
    "airllm_fixed_rank8.yaml": "FixedRank",
    "airllm_capacity_greedy.yaml": "CapacityGreedyUniform",
    "airllm_random_feasible.yaml": "RandomFeasiblePolicy",
    "airllm_ppo.yaml": "PPOPolicy",
    "airllm_hierarchical.yaml": "AirLLMPolicy",
}


@pytest.mark.parametrize(("name", "policy_name"), AIRLLM_POLICIES.items())
def test_airllm_configs_build_their_policy_on_the_shared_link(name, policy_name):
    from lit_airlora.channel.large_scale import FixedSNR

    (callback,) = [c for c in _callbacks(name) if isinstance(c, RankPolicyCallback)]
    assert type(callback.policy).__name__ == policy_name
    assert isinstance(callback.channel.large_scale, FixedSNR)
    env = getattr(callback.policy, "env", None)
    if env is not None:  # the shared cost model, read from configs/airllm/environment.yaml
        assert env.bandwidth_hz == 34.52e6 and env.values_per_rank_extra == 1
