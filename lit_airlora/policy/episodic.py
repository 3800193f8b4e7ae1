"""The shared loop of AirLLM's policies: one round is one step, episodes of fixed length."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from typing_extensions import override

from lit_airlora.policy.airllm_env import AirLLMEnvironment
from lit_airlora.policy.base import Feedback, RankPolicy
from lit_airlora.policy.checks import check_int
from lit_airlora.policy.costs import Shapes
from lit_airlora.policy.observation import Observation


class EpisodicRankPolicy(RankPolicy):
    """AirLLM's environment loop around a decision rule (Yang et al., arXiv 2507.11515).

    Before a round the policy builds the state ``[snr, bandwidth, entropy, unk rate, ranks /
    r_max]`` (:class:`AirLLMEnvironment`), chooses ranks in ``[rank_min, rank_max]`` and prices
    them: ``c = bits / (C tau)``. A round with ``c > 1`` is infeasible: with ``skip_infeasible``
    the module skips it (no local step, nothing uploaded). After the round the reward is
    ``-loss - lambda c`` (feasible) or ``-penalty c - lambda c``. Every ``episode_length`` rounds
    the learner updates (at the next decision, whose state bootstraps the last step's value).

    The policy leaves the process's thread count alone. Its networks are tiny and, on a shared
    CPU, run fastest on one intra-op thread (the refiner's update measured 50x slower with 2
    threads under load): set ``OMP_NUM_THREADS=1`` or ``torch.set_num_threads(1)`` in your
    script when the policy's time matters.

    Args:
        rank_min: Smallest rank (``r_min``).
        rank_max: Largest rank (``r_max``; None: the LoRA ``max_rank``).
        episode_length: Rounds per episode.
        skip_infeasible: Skip infeasible rounds (the paper's rule); off, they train and are
            still penalised.
        environment: Cost model, reward and state normalisation (None: the paper's).
        seed: Seed of the networks' initialisation and of every draw the policy makes.
    """

    required_observations = ("snr_db",)

    def __init__(
        self,
        rank_min: int = 1,
        rank_max: int | None = None,
        episode_length: int = 15,
        skip_infeasible: bool = True,
        environment: AirLLMEnvironment | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(rank_min=rank_min)
        if rank_max is not None:
            check_int("rank_max", rank_max, 1)
            if rank_max < rank_min:
                raise ValueError(
                    f"`rank_max` ({rank_max}) must be >= `rank_min` ({rank_min}) of "
                    f"{type(self).__name__}."
                )
        check_int("episode_length", episode_length, 1)
        check_int("seed", seed, 0)
        if environment is not None and not isinstance(environment, AirLLMEnvironment):
            raise TypeError(
                f"`environment` ({type(environment).__name__}) must be an "
                "lit_airlora.policy.airllm_env.AirLLMEnvironment (or None for the paper's)."
            )
        self.rank_max, self.episode_length = rank_max, episode_length
        self.skip_infeasible, self.seed = skip_infeasible, seed
        self.env = environment or AirLLMEnvironment()
        self.generator = torch.Generator().manual_seed(seed)
        self.steps, self.feasible_steps, self.reward_sum = 0, 0, 0.0
        self._last: dict[str, float] = {}
        self._learned: dict[str, float] = {}
        self._feedback: dict[str, float] = {}

    # -- rank range ----------------------------------------------------------------------------
    @override
    def check_max_rank(self, max_rank: int) -> None:
        super().check_max_rank(max_rank)
        if self.rank_max is not None and self.rank_max > max_rank:
            raise ValueError(
                f"`rank_max` ({self.rank_max}) of {type(self).__name__} must be <= `max_rank` "
                f"({max_rank}) of the LoRA model: lower `rank_max` or raise the LoRA rank."
            )

    def rank_range(self, max_rank: int) -> tuple[int, int]:
        return self.rank_min, self.rank_max if self.rank_max is not None else max_rank

    # -- the step ------------------------------------------------------------------------------
    @override
    def act(self, obs: Observation) -> dict[str, int]:
        self.check_max_rank(obs.max_rank)
        start = time.perf_counter()
        state = self.env.state(obs)
        if self.steps > 0 and self.steps % self.episode_length == 0 and self.pending_episode:
            self._learned = self.learn(state)
            self._learned["update_time_s"] = time.perf_counter() - start
        ranks = self.choose(state, obs)
        cost = self.env.cost(ranks, obs)
        self._last = {
            "cost": cost,
            "feasible": float(cost <= 1.0),
            "max_uniform_rank": self.env.max_uniform_rank(obs),
            "decision_time_s": time.perf_counter() - start,
        }
        return ranks

    @property
    def skips_rounds(self) -> bool:
        return self.skip_infeasible

    @override
    def skip_round(self, obs: Observation, ranks: Mapping[str, int]) -> bool:
        """Whether the module should skip the round (infeasible and ``skip_infeasible``)."""
        return self.skip_infeasible and self.env.cost(ranks, obs) > 1.0

    @override
    def update(self, obs: Observation, ranks: Mapping[str, int], feedback: Feedback) -> None:
        start = time.perf_counter()
        cost = self.env.cost(ranks, obs)
        reward = self.env.reward(feedback.train_loss, cost)
        self.record(reward)
        self.steps += 1
        self.feasible_steps += int(cost <= 1.0)
        self.reward_sum += reward
        self._feedback = {
            "reward": reward,
            "feasible_fraction": self.feasible_steps / self.steps,
            "episode": float((self.steps - 1) // self.episode_length),
            "record_time_s": time.perf_counter() - start,
        }

    # -- what subclasses define ----------------------------------------------------------------
    def choose(self, state: Tensor, obs: Observation) -> dict[str, int]:
        """Ranks for ``obs`` given its ``[4 + L]`` state."""
        raise NotImplementedError

    def record(self, reward: float) -> None:
        """Store the reward of the last decision (learners keep their transition)."""

    @property
    def pending_episode(self) -> bool:
        """Whether a finished episode waits for :meth:`learn`."""
        return False

    def learn(self, next_state: Tensor) -> dict[str, float]:
        """Update after an episode (``next_state`` bootstraps the last value); returns metrics."""
        return {}

    # -- logging and checkpoint ----------------------------------------------------------------
    @override
    def payload_bits(self, ranks: Mapping[str, int], shapes: Shapes) -> float:
        return self.env.payload_bits(ranks, shapes)

    has_link_model = True

    @override
    def link_costs(
        self, bits: Tensor, snr_db: Tensor, bandwidth_hz: float | None
    ) -> dict[str, float]:
        return self.env.link_costs(bits, snr_db, bandwidth_hz)

    @override
    def metrics(self) -> dict[str, float]:
        return {**self._last, **self._learned}

    @override
    def update_metrics(self) -> dict[str, float]:
        return dict(self._feedback)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "steps": self.steps,
            "feasible_steps": self.feasible_steps,
            "reward_sum": self.reward_sum,
        }

    @override
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.steps, self.feasible_steps = int(state["steps"]), int(state["feasible_steps"])
        self.reward_sum = float(state["reward_sum"])


def seeded_build(seed: int, build):
    """``build()`` with torch's global generator seeded by ``seed`` and restored afterwards, so
    the networks do not depend on (or disturb) the training's random stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
