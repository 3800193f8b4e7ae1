"""Importance-budget ranks: share a global budget of rank components by component importance."""

from __future__ import annotations

import torch
from torch import Tensor
from typing_extensions import override

from lit_airlora.policy.base import RankPolicy
from lit_airlora.policy.observation import Observation, ranks_dict, ranks_tensor


def effective_importance(scores: Tensor, ranks: Tensor, max_rank: int) -> Tensor:
    """Importance in weight space: ``s_i * max_rank / r_l`` (non-finite scores count as 0).

    The rank mask scales a module's active components by ``max_rank / r_l``, so a component's
    contribution to the adapted weight is ``s_i`` times that factor; scores of modules at
    different ranks only compare after this scaling.

    Args:
        scores: ``[L, max_rank]`` float, ``||b_i|| ||a_i||`` per module and component.
        ranks: ``[L]`` int, active rank per module.
        max_rank: Allocated rank.
    """
    scale = max_rank / ranks.to(torch.float32).clamp(min=1)
    scores = torch.nan_to_num(scores.float(), nan=0.0, posinf=0.0, neginf=0.0)
    return scores * scale[:, None]


def allocate_by_importance(scores: Tensor, budget: int, rank_min: int) -> Tensor:
    """Ranks ``[L]`` (int64) keeping the globally most important components, ``rank_min`` each.

    Every module first keeps its ``rank_min`` best components; the remaining
    ``budget - L * rank_min`` components are the best of the rest across all modules. Ties
    (e.g. all-zero scores of inactive components) go position by position over the modules, so
    they grow ranks evenly. Within a module the kept components are its top ones, so the ranks
    are consistent with importance truncation.

    Args:
        scores: ``[L, R]`` float, importance per module and component.
        budget: Total number of components ``sum_l r_l`` (at least ``L * rank_min``).
        rank_min: Smallest rank per module (``<= R``).
    """
    num_modules, max_rank = scores.shape
    remaining = min(budget - num_modules * rank_min, num_modules * (max_rank - rank_min))
    if remaining < 0:
        raise ValueError(
            f"`total_rank_budget` ({budget}) must be >= rank_min * modules "
            f"({rank_min} * {num_modules} = {rank_min * num_modules})."
        )
    pool = scores.sort(dim=1, descending=True).values[:, rank_min:]  # (L, R - rank_min)
    flat = pool.T.reshape(-1)  # position-major: index = j * L + l
    order = torch.argsort(flat, descending=True, stable=True)[:remaining]
    extra = torch.bincount(order % num_modules, minlength=num_modules)
    return rank_min + extra


class ImportanceBudget(RankPolicy):
    """AdaLoRA-like allocation of a global rank budget by component importance.

    Like AdaLoRA (Zhang et al., ICLR 2023), components compete globally: each round the budget
    of ``sum_l r_l`` components goes to the components with the largest importance
    ``s_i = ||b_i|| ||a_i||`` (SOFT's per-rank score, scaled to weight space by the rank mask's
    ``max_rank / r_l``), with at least ``rank_min`` per module. The callback then truncates
    with ``truncate="importance"``, dropping exactly the components that lost. Components that
    were dropped have zero importance and regrow only through spare budget, evenly.

    Args:
        total_rank_budget: Sum of ranks over all modules. Give this or ``budget_fraction``.
        budget_fraction: Budget as a fraction of ``num_modules * max_rank`` (in ``(0, 1]``).
        rank_min: Smallest rank per module.
    """

    required_observations = ("importance",)

    def __init__(
        self,
        total_rank_budget: int | None = None,
        budget_fraction: float | None = None,
        rank_min: int = 1,
    ):
        super().__init__(rank_min=rank_min)
        if (total_rank_budget is None) == (budget_fraction is None):
            raise ValueError(
                f"Give exactly one of `total_rank_budget` ({total_rank_budget!r}) and "
                f"`budget_fraction` ({budget_fraction!r})."
            )
        if total_rank_budget is not None and total_rank_budget < 1:
            raise ValueError(f"`total_rank_budget` ({total_rank_budget}) must be >= 1.")
        if budget_fraction is not None and not 0 < budget_fraction <= 1:
            raise ValueError(f"`budget_fraction` ({budget_fraction}) must be in (0, 1].")
        self.total_rank_budget = total_rank_budget
        self.budget_fraction = budget_fraction

    def budget(self, num_modules: int, max_rank: int) -> int:
        """Total components for ``num_modules`` adapters allocated at ``max_rank``.

        A ``budget_fraction`` budget is raised to ``rank_min * num_modules`` when it is lower
        (an explicit ``total_rank_budget`` that low is an error instead).
        """
        if self.total_rank_budget is not None:
            return self.total_rank_budget
        fraction_budget = round(self.budget_fraction * num_modules * max_rank)
        return max(self.rank_min * num_modules, fraction_budget)

    @override
    def act(self, obs: Observation) -> dict[str, int]:
        self.check_max_rank(obs.max_rank)
        modules = obs.modules
        importance = obs.require("importance")
        scores = torch.stack([importance[name].float().cpu() for name in modules])
        scores = effective_importance(scores, ranks_tensor(obs.ranks, modules), obs.max_rank)
        budget = self.budget(len(modules), obs.max_rank)
        return ranks_dict(allocate_by_importance(scores, budget, self.rank_min), modules)
