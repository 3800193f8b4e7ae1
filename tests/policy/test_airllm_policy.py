"""AirLLMPolicy, PPOPolicy, RandomFeasiblePolicy: ranges, learning, checkpoint, bad input."""

from __future__ import annotations

import io

import pytest
import torch

from lit_airlora.policy.agent_settings import DDIMSettings, PPOSettings
from lit_airlora.policy.airllm import AirLLMPolicy, PPOPolicy
from lit_airlora.policy.airllm_env import AirLLMEnvironment
from lit_airlora.policy.base import Feedback
from lit_airlora.policy.random_feasible import RandomFeasiblePolicy
from tests.policy.policy_helpers import observation, opt_1p3b_shapes

SHAPES = {f"m{i}": (32, 16 + 8 * i) for i in range(6)}
#: 6 small adapters on a 30 kHz link: rank 8 everywhere is infeasible below about 15 dB.
ENV = AirLLMEnvironment(bandwidth_hz=30e3)


def _small_airllm(**overrides) -> AirLLMPolicy:
    kwargs = {
        "episode_length": 3,
        "environment": ENV,
        "ppo": PPOSettings(hidden=16),
        "ddim": DDIMSettings(hidden=32, num_train_timesteps=50, num_inference_steps=5, warmup=4),
        "coarse_dim": 4,
        "seed": 0,
    }
    kwargs.update(overrides)
    return AirLLMPolicy(**kwargs)


def _rollout(policy, rounds: int, start: int = 0) -> list[dict[str, int]]:
    """Act and give feedback for ``rounds`` rounds at SNRs cycling over -5..15 dB."""
    decisions = []
    for k in range(start, start + rounds):
        obs = observation(SHAPES, [-5.0, 0.0, 5.0, 10.0, 15.0][k % 5], max_rank=8, round_idx=k)
        ranks = policy.act(obs)
        decisions.append(ranks)
        loss = 2.0 - 0.1 * sum(ranks.values()) / len(ranks)
        policy.update(obs, ranks, Feedback(round_idx=k, train_loss=loss))
    return decisions


@pytest.mark.parametrize("make", [_small_airllm, lambda: PPOPolicy(rank_min=2, rank_max=6)])
def test_ranks_stay_in_range(make):
    policy = make()
    for ranks in _rollout(policy, 4):
        low, high = policy.rank_range(8)
        assert set(ranks) == set(SHAPES) and all(low <= r <= high for r in ranks.values())


def test_learning_after_each_episode_and_metrics():
    policy = _small_airllm()
    _rollout(policy, 6)  # two episodes of 3; the second update waits for the next decision
    # The first update (at round 3) found 3 transitions: PPO ran, the refiner was warming up.
    assert "pg_loss" in policy.metrics() and "diffusion_loss" not in policy.metrics()
    _rollout(policy, 1, start=6)
    metrics = {**policy.metrics(), **policy.update_metrics()}
    for key in ("pg_loss", "v_loss", "entropy", "diffusion_loss", "cost", "reward"):
        assert torch.isfinite(torch.tensor(metrics[key])), key
    assert 0.0 <= metrics["feasible_fraction"] <= 1.0


def test_checkpoint_round_trip_makes_the_same_decisions():
    """A policy restored from a weights_only checkpoint decides exactly as the original."""
    original = _small_airllm()
    _rollout(original, 5)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    restored = _small_airllm()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert _rollout(restored, 6, start=5) == _rollout(original, 6, start=5)


def test_decisions_are_the_same_on_1_and_2_threads_and_leave_the_thread_count_alone(
    monkeypatch,
):
    """Two episodes (PPO and refiner updates included): equal decisions on 1 and 2 intra-op
    threads, and no ``torch.set_num_threads`` call inside the policy (the caller's setting)."""
    threads = torch.get_num_threads()
    decisions = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            with monkeypatch.context() as patch:
                calls = []
                patch.setattr(torch, "set_num_threads", calls.append)
                decisions.append(_rollout(_small_airllm(), 7))
            assert calls == [] and torch.get_num_threads() == count
    finally:
        torch.set_num_threads(threads)
    assert decisions[0] == decisions[1]


def test_seed_fixes_the_decisions():
    assert _rollout(_small_airllm(seed=3), 4) == _rollout(_small_airllm(seed=3), 4)
    assert _rollout(_small_airllm(seed=3), 4) != _rollout(_small_airllm(seed=4), 4)


def test_random_feasible_is_feasible_whenever_rank_min_fits():
    policy = RandomFeasiblePolicy(seed=0)
    shapes = opt_1p3b_shapes()
    for snr_db in (-5.0, 0.0, 5.0, 10.0, 15.0):
        obs = observation(shapes, snr_db, max_rank=8)
        ranks = policy.act(obs)
        assert policy.env.cost(ranks, obs) <= 1.0 and not policy.skip_round(obs, ranks)
    ranks = policy.act(observation(shapes, -5.0, max_rank=8))
    assert set(ranks.values()) == {1}  # only rank 1 fits at -5 dB (1.40 per adapter)


def test_infeasible_choice_is_skipped_and_penalised():
    policy = PPOPolicy(environment=ENV, episode_length=2)
    obs = observation(SHAPES, -5.0, max_rank=8)
    ranks = dict.fromkeys(SHAPES, 8)
    cost = ENV.cost(ranks, obs)
    assert cost > 1.0 and policy.skip_round(obs, ranks)
    policy.act(obs)
    policy.update(obs, ranks, Feedback(round_idx=0, train_loss=float("nan")))
    assert policy.update_metrics()["reward"] == pytest.approx(-10.1 * cost)
    assert not PPOPolicy(environment=ENV, skip_infeasible=False).skip_round(obs, ranks)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rank_min": 0}, ValueError, "`rank_min`"),
        ({"rank_min": 4, "rank_max": 2}, ValueError, "`rank_max`"),
        ({"episode_length": 0}, ValueError, "`episode_length`"),
        ({"coarse_dim": 0}, ValueError, "`coarse_dim`"),
        ({"environment": "100MHz"}, TypeError, "`environment`"),
        ({"ddim": {"hidden": 8}}, TypeError, "`ddim`"),
    ],
)
def test_bad_policy_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        AirLLMPolicy(**kwargs)


def test_rank_range_must_fit_max_rank():
    with pytest.raises(ValueError, match=r"`rank_max` \(16\).*`max_rank` \(8\)"):
        AirLLMPolicy(rank_max=16).check_max_rank(8)
    with pytest.raises(ValueError, match=r"`rank_min` \(9\)"):
        RandomFeasiblePolicy(rank_min=9).check_max_rank(8)
