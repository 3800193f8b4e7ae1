"""PPO: GAE and the clipped loss against values computed by hand on a 4-step example."""

from __future__ import annotations

import math

import pytest
import torch

from lit_airlora.policy.agent_settings import PPOSettings
from lit_airlora.policy.ppo import PPOAgent, gae

REWARDS = [1.0, 0.0, -1.0, 2.0]
VALUES = [0.5, 0.2, -0.3, 0.1]
BOOTSTRAP = 0.4  # value of the state after the 4th step (time limit, not terminal)


def test_gae_matches_the_hand_computed_recursion():
    gamma, lam = 0.95, 0.95
    next_values = [*VALUES[1:], BOOTSTRAP]
    deltas = [r + gamma * nv - v for r, nv, v in zip(REWARDS, next_values, VALUES, strict=True)]
    # A_t = sum_k (gamma lambda)^k delta_{t+k}, written out for 4 steps.
    expected = [sum((gamma * lam) ** k * deltas[t + k] for k in range(4 - t)) for t in range(4)]
    assert deltas[3] == pytest.approx(2.0 + 0.95 * 0.4 - 0.1)
    advantage, target = gae(
        torch.tensor(REWARDS).reshape(-1, 1),
        torch.tensor(VALUES).reshape(-1, 1),
        torch.tensor(next_values).reshape(-1, 1),
        gamma,
        lam,
    )
    assert advantage.flatten().tolist() == pytest.approx(expected, abs=1e-6)
    assert target.flatten().tolist() == pytest.approx(
        [a + v for a, v in zip(expected, VALUES, strict=True)], abs=1e-6
    )


def _agent_with_standard_normal_policy(value: float) -> PPOAgent:
    settings = PPOSettings(hidden=8, log_std_init=0.0, clip_epsilon=0.2, entropy_coef=0.01)
    agent = PPOAgent(3, 1, settings, torch.Generator().manual_seed(0))
    with torch.no_grad():  # loc = 0, scale = 1, value = const: the loss is known in closed form
        agent.net.mean.weight.zero_()
        agent.net.mean.bias.zero_()
        agent.net.value.weight.zero_()
        agent.net.value.bias.fill_(value)
    return agent


def test_clipped_ppo_loss_matches_the_hand_computed_values():
    from tensordict import TensorDict

    agent = _agent_with_standard_normal_policy(value=0.3)
    actions = [0.0, 1.0, -0.5, 2.0]
    old_log_probs = [-1.2, -1.0, -1.5, -2.6]
    advantages = [1.0, -0.5, 2.0, -1.0]
    targets = [0.5, -0.2, 1.0, 0.0]
    log_probs = [-a * a / 2 - 0.5 * math.log(2 * math.pi) for a in actions]
    ratio = [math.exp(n - o) for n, o in zip(log_probs, old_log_probs, strict=True)]
    pg_loss1 = [-adv * r for adv, r in zip(advantages, ratio, strict=True)]
    pg_loss2 = [-adv * min(max(r, 0.8), 1.2) for adv, r in zip(advantages, ratio, strict=True)]
    pg_loss = sum(max(a, b) for a, b in zip(pg_loss1, pg_loss2, strict=True)) / 4
    v_loss = sum((0.3 - t) ** 2 for t in targets) / 4
    entropy = 0.5 * math.log(2 * math.pi * math.e)  # N(0, 1)
    batch = TensorDict(
        {
            "observation": torch.randn(4, 3),
            "action": torch.tensor(actions).reshape(4, 1),
            "action_log_prob": torch.tensor(old_log_probs),
            "advantage": torch.tensor(advantages).reshape(4, 1),
            "value_target": torch.tensor(targets).reshape(4, 1),
        },
        batch_size=[4],
    )
    losses = {k: v.detach() for k, v in agent.loss_module(batch).items()}
    assert any(r > 1.2 or r < 0.8 for r in ratio)  # the clip is exercised
    assert float(losses["loss_objective"]) == pytest.approx(pg_loss, rel=1e-5)
    assert float(losses["loss_critic"]) == pytest.approx(0.5 * v_loss, rel=1e-5)
    assert float(losses["entropy"]) == pytest.approx(entropy, rel=1e-5)
    assert float(losses["loss_entropy"]) == pytest.approx(-0.01 * entropy, rel=1e-5)


def test_update_improves_the_rewarded_direction():
    """On a 1-step bandit with reward = action, PPO moves the mean action up (fixed seed)."""
    settings = PPOSettings(hidden=16, learning_rate=1e-2, minibatch_size=16)
    agent = PPOAgent(2, 1, settings, torch.Generator().manual_seed(0))
    state = torch.tensor([0.1, -0.2])
    start = float(agent.net(state.unsqueeze(0))[0])
    for _ in range(10):
        for _ in range(16):
            action, _ = agent.act(state)
            agent.record(float(action))
        agent.update(state)
    assert float(agent.net(state.unsqueeze(0))[0]) > start + 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gamma": 1.5}, "`gamma`"),
        ({"clip_epsilon": 0.0}, "`clip_epsilon`"),
        ({"minibatch_size": 0}, "`minibatch_size`"),
        ({"hidden": 0}, "`hidden`"),
        ({"log_std_init": 3.0}, "`log_std_init`"),
        ({"learning_rate": float("inf")}, "`learning_rate`"),
    ],
)
def test_bad_ppo_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PPOSettings(**kwargs)
