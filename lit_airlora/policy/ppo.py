"""PPO for rank policies: the coarse actor-critic, its rollout buffer and the clipped update.

GAE and the clipped surrogate come from torchrl (``generalized_advantage_estimate``,
``ClipPPOLoss``); the networks, the rollout storage (tensors, so the checkpoint loads with
``weights_only=True``) and the epoch/minibatch loop are ours. Names follow CleanRL/torchrl.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lit_airlora.policy.agent_settings import PPOSettings

#: Rollout fields, each stored as a list of per-step tensors.
ROLLOUT_KEYS = ("observation", "action", "action_log_prob", "state_value", "reward")


class ActorCritic(nn.Module):
    """Shared MLP encoder (LayerNorm, Mish), Gaussian head with a state-independent log-std,
    and a value head (AirLLM's coarse actor-critic).

    Args:
        state_dim: Length of the state vector.
        action_dim: Dimension of the Gaussian action ``u`` (the coarse action is ``tanh(u)``).
        hidden: Width of the encoder.
        log_std_init: Initial log standard deviation.
        log_std_bounds: ``(low, high)`` clamp of the log standard deviation.
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        hidden: int = 256,
        log_std_init: float = -0.5,
        log_std_bounds: tuple[float, float] = (-5.0, 1.0),
    ) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(state_dim, hidden),
            nn.LayerNorm(hidden),
            nn.Mish(),
            nn.Linear(hidden, hidden),
            nn.Mish(),
        )
        self.mean = nn.Linear(hidden, action_dim)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        self.value = nn.Linear(hidden, 1)
        self.log_std_bounds = log_std_bounds

    def forward(self, observation: Tensor) -> tuple[Tensor, Tensor]:
        """``(loc, scale)`` of the Gaussian, both ``[B, action_dim]``."""
        loc = self.mean(self.encoder(observation))
        scale = self.log_std.clamp(*self.log_std_bounds).exp().expand_as(loc)
        return loc, scale

    def state_value(self, observation: Tensor) -> Tensor:
        """``[B, 1]`` value estimate."""
        return self.value(self.encoder(observation))


class PPOAgent:
    """Collects one episode of (state, action, reward) and runs clipped PPO on it.

    Args:
        state_dim: Length of the state vector.
        action_dim: Dimension of the Gaussian action.
        settings: PPO hyperparameters.
        generator: Generator for action noise and minibatch shuffles.
    """

    def __init__(
        self, state_dim: int, action_dim: int, settings: PPOSettings, generator: torch.Generator
    ) -> None:
        self.settings, self.generator = settings, generator
        bounds = (settings.log_std_min, settings.log_std_max)
        self.net = ActorCritic(
            state_dim, action_dim, settings.hidden, settings.log_std_init, bounds
        )
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=settings.learning_rate)
        self.loss_module = clip_ppo_loss(
            self.net, settings.clip_epsilon, settings.value_coef, settings.entropy_coef
        )
        self.rollout: dict[str, list[Tensor]] = {k: [] for k in ROLLOUT_KEYS}

    @torch.no_grad()
    def act(self, observation: Tensor) -> tuple[Tensor, Tensor]:
        """Sample ``u ~ N(loc, scale)`` for a ``[S]`` state; returns ``(u, tanh(u))``, ``[A]``."""
        loc, scale = self.net(observation.unsqueeze(0))  # (1, A)
        noise = torch.randn(loc.shape, generator=self.generator)
        action = loc + scale * noise
        log_prob = torch.distributions.Normal(loc, scale).log_prob(action).sum(-1)
        value = self.net.state_value(observation.unsqueeze(0))
        self._pending = (observation, action[0], log_prob[0], value[0, 0])
        return action[0], torch.tanh(action[0])

    def record(self, reward: float) -> None:
        """Store the last :meth:`act` with its reward."""
        observation, action, log_prob, value = self._pending
        for key, item in zip(ROLLOUT_KEYS, (observation, action, log_prob, value), strict=False):
            self.rollout[key].append(item)
        self.rollout["reward"].append(torch.tensor(float(reward)))

    def __len__(self) -> int:
        return len(self.rollout["reward"])

    def update(self, next_observation: Tensor) -> dict[str, float]:
        """GAE over the stored episode (bootstrapped from ``next_observation``), then PPO."""
        batch = self._batch(next_observation)
        metrics: dict[str, float] = {}
        size = self.settings.minibatch_size
        for _ in range(self.settings.num_epochs):
            order = torch.randperm(len(self), generator=self.generator)
            for start in range(0, len(self), size):
                metrics = self._step(batch[order[start : start + size]])
        self.rollout = {k: [] for k in ROLLOUT_KEYS}
        return metrics

    def _batch(self, next_observation: Tensor):
        from tensordict import TensorDict

        data = {k: torch.stack(v) for k, v in self.rollout.items()}
        with torch.no_grad():
            values = data["state_value"].reshape(-1, 1)  # (T, 1)
            next_value = self.net.state_value(next_observation.unsqueeze(0))  # (1, 1)
            next_values = torch.cat([values[1:], next_value])
            advantage, value_target = gae(
                data["reward"].reshape(-1, 1),
                values,
                next_values,
                self.settings.gamma,
                self.settings.gae_lambda,
            )
            if self.settings.normalize_advantage and len(advantage) > 1:
                advantage = (advantage - advantage.mean()) / (advantage.std(unbiased=False) + 1e-6)
        fields = {
            "observation": data["observation"],
            "action": data["action"],
            "action_log_prob": data["action_log_prob"],
            "advantage": advantage,
            "value_target": value_target,
        }
        return TensorDict(fields, batch_size=[len(values)])

    def _step(self, minibatch) -> dict[str, float]:
        losses = self.loss_module(minibatch)
        loss = sum(v for k, v in losses.items() if k.startswith("loss_"))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), self.settings.max_grad_norm)
        self.optimizer.step()
        return {k: float(v.detach().mean()) for k, v in losses.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rollout": {k: [t.clone() for t in v] for k, v in self.rollout.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rollout = {k: [t.clone() for t in state["rollout"][k]] for k in ROLLOUT_KEYS}


def gae(
    reward: Tensor, value: Tensor, next_value: Tensor, gamma: float, gae_lambda: float
) -> tuple[Tensor, Tensor]:
    """torchrl's GAE over one non-terminating episode; all ``[T, 1]``: (advantage, target).

    Episodes are cut by a time limit, not a terminal state, so the last step bootstraps from
    ``next_value`` (as the official code does with the next state's value).
    """
    from torchrl.objectives.value.functional import generalized_advantage_estimate

    done = torch.zeros_like(reward, dtype=torch.bool)
    return generalized_advantage_estimate(
        gamma, gae_lambda, value, next_value, reward, done=done, terminated=done
    )


def clip_ppo_loss(net: ActorCritic, clip_epsilon: float, value_coef: float, entropy_coef: float):
    """torchrl's ``ClipPPOLoss`` on ``net``: returns ``loss_objective`` (``pg_loss``),
    ``loss_critic`` (``value_coef * v_loss``), ``loss_entropy`` and diagnostics."""
    from tensordict.nn import TensorDictModule
    from torchrl.modules import IndependentNormal, ProbabilisticActor, ValueOperator
    from torchrl.objectives import ClipPPOLoss

    actor = ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=IndependentNormal,
        return_log_prob=True,
    )
    critic = ValueOperator(_ValueHead(net), in_keys=["observation"])
    return ClipPPOLoss(
        actor,
        critic,
        clip_epsilon=clip_epsilon,
        entropy_coeff=entropy_coef,
        critic_coeff=value_coef,
        loss_critic_type="l2",
        normalize_advantage=False,
        functional=False,
    )


class _ValueHead(nn.Module):
    """``net.state_value`` as a module (the critic shares the actor's encoder)."""

    def __init__(self, net: ActorCritic) -> None:
        super().__init__()
        self.net = net

    def forward(self, observation: Tensor) -> Tensor:
        return self.net.state_value(observation)
