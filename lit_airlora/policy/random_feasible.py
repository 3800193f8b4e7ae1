"""AirLLM's random-feasible baseline: random per-adapter ranks inside the capacity budget."""

from __future__ import annotations

import torch
from torch import Tensor
from typing_extensions import override

from lit_airlora.policy import costs
from lit_airlora.policy.episodic import EpisodicRankPolicy
from lit_airlora.policy.observation import Observation, ranks_dict


class RandomFeasiblePolicy(EpisodicRankPolicy):
    """Each adapter's rank drawn uniformly from ``[rank_min, min(rank_max, r_fit)]``, where
    ``r_fit`` is the largest uniform rank that fits the round's budget, so every draw is
    feasible; when even ``rank_min`` does not fit, ``rank_min`` everywhere (infeasible: the
    round is skipped and penalised). A baseline of AirLLM (Yang et al., arXiv 2507.11515);
    arguments as :class:`EpisodicRankPolicy`.
    """

    @override
    def choose(self, state: Tensor, obs: Observation) -> dict[str, int]:
        low, high = self.rank_range(obs.max_rank)
        fit = costs.largest_feasible_uniform_rank(
            obs.shapes,
            self.env.capacity_bps(obs),
            self.env.latency_budget_s,
            self.env.bits_per_value,
            self.env.values_per_rank_extra,
        )
        high = min(high, fit)
        if high < low:
            return dict.fromkeys(obs.modules, low)
        ranks = torch.randint(low, high + 1, (len(obs.modules),), generator=self.generator)
        return ranks_dict(ranks, obs.modules)
