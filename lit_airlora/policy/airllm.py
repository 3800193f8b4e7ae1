"""AirLLM's learned rank policies: PPO-only, and the hierarchical PPO + DDIM policy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor
from typing_extensions import override

from lit_airlora.policy.agent_settings import DDIMSettings, PPOSettings
from lit_airlora.policy.airllm_env import AirLLMEnvironment, decode_ranks, encode_ranks
from lit_airlora.policy.checks import check_int
from lit_airlora.policy.ddim import DDIMRefiner, ReplayBuffer
from lit_airlora.policy.episodic import EpisodicRankPolicy, seeded_build
from lit_airlora.policy.observation import Observation, ranks_dict
from lit_airlora.policy.ppo import PPOAgent


class PPOPolicy(EpisodicRankPolicy):
    """PPO-only baseline of AirLLM: a Gaussian action of one dimension per adapter, squashed
    by ``tanh`` and decoded straight to ranks (no diffusion refinement).

    The networks are built at the first decision (the number of adapters ``L`` comes from the
    model). Arguments as :class:`EpisodicRankPolicy`, plus:

    Args:
        rank_min: Smallest rank.
        rank_max: Largest rank (None: the LoRA ``max_rank``).
        episode_length: Rounds per episode (one PPO update each).
        skip_infeasible: Skip infeasible rounds.
        environment: Cost model, reward and state normalisation (None: the paper's).
        ppo: PPO hyperparameters (None: the paper's).
        seed: Seed of the networks and of every draw.
    """

    def __init__(
        self,
        rank_min: int = 1,
        rank_max: int | None = None,
        episode_length: int = 15,
        skip_infeasible: bool = True,
        environment: AirLLMEnvironment | None = None,
        ppo: PPOSettings | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(rank_min, rank_max, episode_length, skip_infeasible, environment, seed)
        if ppo is not None and not isinstance(ppo, PPOSettings):
            raise TypeError(f"`ppo` ({type(ppo).__name__}) must be a PPOSettings (or None).")
        self.ppo_settings = ppo or PPOSettings()
        self.dims: tuple[int, int, int] | None = None  # (num_modules, rank_low, rank_high)
        self.agent: PPOAgent | None = None

    def action_dim(self, num_modules: int) -> int:
        return num_modules

    def build(self, num_modules: int, low: int, high: int) -> None:
        """Create the networks for ``num_modules`` adapters and ranks in ``[low, high]``."""
        self.dims = (num_modules, low, high)
        state_dim = 4 + num_modules
        action_dim = self.action_dim(num_modules)
        self.agent = seeded_build(
            self.seed, lambda: PPOAgent(state_dim, action_dim, self.ppo_settings, self.generator)
        )

    def _ensure_built(self, obs: Observation) -> tuple[int, int]:
        low, high = self.rank_range(obs.max_rank)
        if self.dims is None:
            self.build(len(obs.modules), low, high)
        elif self.dims != (len(obs.modules), low, high):
            raise RuntimeError(
                f"{type(self).__name__} was built for (adapters, rank_min, rank_max) = "
                f"{self.dims}, but the model now has {(len(obs.modules), low, high)}."
            )
        return low, high

    @override
    def choose(self, state: Tensor, obs: Observation) -> dict[str, int]:
        low, high = self._ensure_built(obs)
        _, coarse = self.agent.act(state)
        return ranks_dict(decode_ranks(coarse, low, high), obs.modules)

    @override
    def record(self, reward: float) -> None:
        self.agent.record(reward)

    @property
    @override
    def pending_episode(self) -> bool:
        return self.agent is not None and len(self.agent) > 0

    @override
    def learn(self, next_state: Tensor) -> dict[str, float]:
        losses = self.agent.update(next_state)
        return {
            "pg_loss": losses["loss_objective"],
            "v_loss": losses["loss_critic"] / max(self.ppo_settings.value_coef, 1e-12),
            "entropy": losses["entropy"],
            "clip_fraction": losses["clip_fraction"],
            "approx_kl": losses["kl_approx"],
        }

    @override
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["dims"] = None if self.dims is None else list(self.dims)
        state["agent"] = None if self.agent is None else self.agent.state_dict()
        return state

    @override
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        if state["dims"] is not None:
            self.build(*state["dims"])
            self.agent.load_state_dict(state["agent"])


class AirLLMPolicy(PPOPolicy):
    """AirLLM's hierarchical rank policy (Yang et al., arXiv 2507.11515).

    A PPO actor-critic proposes a coarse action ``a = tanh(u)`` of ``coarse_dim`` values from
    the state; a conditional DDIM refiner turns Gaussian noise into ``x`` in ``[-1, 1]^L``
    conditioned on ``a`` (``num_inference_steps`` deterministic steps, classifier-free
    guidance), and ``x`` decodes to one rank per adapter. Each ``(a, encoded ranks, reward)``
    enters a replay buffer; after each episode PPO updates on the episode, then the refiner
    trains on the buffer with the reward-weighted noise-prediction loss.

    Args:
        rank_min: Smallest rank.
        rank_max: Largest rank (None: the LoRA ``max_rank``).
        episode_length: Rounds per episode.
        skip_infeasible: Skip infeasible rounds.
        environment: Cost model, reward and state normalisation (None: the paper's).
        ppo: PPO hyperparameters (None: the paper's).
        ddim: Refiner and replay-buffer hyperparameters (None: the paper's).
        coarse_dim: Dimension of the coarse action.
        seed: Seed of the networks and of every draw.
    """

    def __init__(
        self,
        rank_min: int = 1,
        rank_max: int | None = None,
        episode_length: int = 15,
        skip_infeasible: bool = True,
        environment: AirLLMEnvironment | None = None,
        ppo: PPOSettings | None = None,
        ddim: DDIMSettings | None = None,
        coarse_dim: int = 16,
        seed: int = 0,
    ) -> None:
        super().__init__(
            rank_min, rank_max, episode_length, skip_infeasible, environment, ppo, seed
        )
        if ddim is not None and not isinstance(ddim, DDIMSettings):
            raise TypeError(f"`ddim` ({type(ddim).__name__}) must be a DDIMSettings (or None).")
        check_int("coarse_dim", coarse_dim, 1)
        self.ddim_settings, self.coarse_dim = ddim or DDIMSettings(), coarse_dim
        self.refiner: DDIMRefiner | None = None
        self.replay: ReplayBuffer | None = None
        self._transition: tuple[Tensor, Tensor] | None = None

    @override
    def action_dim(self, num_modules: int) -> int:
        return self.coarse_dim

    @override
    def build(self, num_modules: int, low: int, high: int) -> None:
        super().build(num_modules, low, high)
        settings = self.ddim_settings
        self.refiner = seeded_build(
            self.seed + 1,
            lambda: DDIMRefiner(num_modules, self.coarse_dim, settings, self.generator),
        )
        self.replay = ReplayBuffer(settings.buffer_size, self.coarse_dim, num_modules)

    @override
    def choose(self, state: Tensor, obs: Observation) -> dict[str, int]:
        low, high = self._ensure_built(obs)
        _, coarse = self.agent.act(state)  # (C,)
        x = self.refiner.sample(coarse.unsqueeze(0))[0]  # (L,)
        ranks = decode_ranks(x, low, high)
        self._transition = (coarse, encode_ranks(ranks, low, high))
        return ranks_dict(ranks, obs.modules)

    @override
    def record(self, reward: float) -> None:
        super().record(reward)
        coarse, encoded = self._transition
        self.replay.add(coarse, encoded, reward)

    @override
    def learn(self, next_state: Tensor) -> dict[str, float]:
        metrics = super().learn(next_state)
        settings = self.ddim_settings
        if len(self.replay) >= settings.warmup and settings.updates_per_episode > 0:
            losses = [
                self.refiner.train_step(*self.replay.sample(settings.batch_size, self.generator))
                for _ in range(settings.updates_per_episode)
            ]
            metrics["diffusion_loss"] = sum(losses) / len(losses)
        metrics["replay_size"] = float(len(self.replay))
        return metrics

    @override
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["refiner"] = None if self.refiner is None else self.refiner.state_dict()
        state["replay"] = None if self.replay is None else self.replay.state_dict()
        return state

    @override
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        if state["dims"] is not None:
            self.refiner.load_state_dict(state["refiner"])
            self.replay.load_state_dict(state["replay"])


__all__ = ["AirLLMPolicy", "PPOPolicy"]
