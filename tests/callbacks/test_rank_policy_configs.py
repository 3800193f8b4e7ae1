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
