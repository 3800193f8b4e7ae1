"""AirFL-LoRA's rank selection: backtracking search on the optimality-gap bound."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from typing_extensions import override

from lit_airlora.policy.aircomp_mse import AirCompMSEModel
from lit_airlora.policy.base import RankPolicy
from lit_airlora.policy.gap_bound import GapBound
from lit_airlora.policy.observation import Observation, ranks_dict, ranks_tensor
from lit_airlora.policy.spectrum import tail_energy


def backtracking_search(
    objective: Callable[[Tensor], float],
    start: Tensor,
    rank_min: int,
    rank_max: int,
    initial_step: int,
    per_module: bool = True,
    max_evaluations: int = 100_000,
) -> Tensor:
    """Integer ranks ``[L]`` minimising ``objective`` by step moves with step halving.

    From ``start``, try lowering the ranks by ``step`` (one module at a time with
    ``per_module``, all together otherwise), then raising them; accept the first move that
    lowers the objective and try the same step again. When no move improves, halve the step
    (backtrack); stop when the step reaches 0. Probing upward too lets the search recover from
    overshooting and regrow ranks when the channel improves. Every accepted move strictly
    lowers the objective, so the search terminates.

    Args:
        objective: Ranks ``[L]`` int64 -> value to minimise.
        start: ``[L]`` int64 starting ranks (clipped into ``[rank_min, rank_max]``).
        rank_min: Smallest rank.
        rank_max: Largest rank.
        initial_step: First step (``>= 1``).
        per_module: Move one module at a time (else all modules by the same step).
        max_evaluations: Safety cap on objective evaluations.
    """
    ranks = start.long().clamp(rank_min, rank_max)
    best, evaluations, step = objective(ranks), 1, initial_step
    groups = [[i] for i in range(ranks.numel())] if per_module else [list(range(ranks.numel()))]
    while step >= 1 and evaluations < max_evaluations:
        improved = False
        for group in groups:
            for direction in (-1, 1):
                candidate = ranks.clone()
                candidate[group] = (candidate[group] + direction * step).clamp(rank_min, rank_max)
                if torch.equal(candidate, ranks):
                    continue
                value, evaluations = objective(candidate), evaluations + 1
                if value < best:
                    ranks, best, improved = candidate, value, True
                    break
        if not improved:
            step //= 2
    return ranks


class BacktrackingRankSelection(RankPolicy):
    """Ranks minimising AirFL-LoRA's optimality-gap bound, by alternating search.

    Sun et al., "Federated Low-Rank Adaptation for Large Models Fine-Tuning Over Wireless
    Networks" (IEEE TWC 2025) bound the gap by an optimisation term, the SGD variance over
    ``K``, the aggregation distortion ``L eta MSE(r, A, F) / K^2`` and a truncation term
    ``Phi(r)`` (:mod:`lit_airlora.policy.gap_bound`). A larger rank truncates less of the
    update's spectrum but lengthens the payload, which under a fixed channel-use budget leaves
    less energy per value and a larger MSE: the bound has an interior optimum. Each round the
    policy alternates (a) transceiver optimisation for fixed ranks (``mse_model.unit_mse``) and
    (b, c) :func:`backtracking_search` on the bound with those transceivers, accepting new ranks
    only when the bound with transceivers re-planned for them is lower (a monotone descent, so
    the alternation cannot cycle), until nothing improves. With transceivers that do not depend
    on the ranks (``MimoAirCompMSE`` under a common energy shift) one move suffices; logs
    ``bound/rank_moves`` and ``bound/converged``. ``Phi`` uses
    the spectrum of the previous round's global update; before one exists (round 0) the
    current ranks are kept.

    Args:
        mse_model: Aggregation-MSE model of the over-the-air round (e.g. ``SisoAirCompMSE``).
        rank_min: Smallest rank per module.
        lipschitz: Smoothness constant ``L`` in the bound.
        lr: Learning rate ``eta`` in the bound.
        opt_term: Optimisation term (rank-independent, logged only).
        variance: SGD variance (rank-independent, logged only).
        truncation_weight: Constant in front of ``Phi(r)``.
        initial_step: First search step (default ``max(1, max_rank // 2)``).
        per_module: Move one module at a time (else a global step for all modules).
        warm_start: Start from the current ranks (else from ``max_rank``).
        max_alternations: Cap on (a)-(c) alternations per round.
    """

    required_observations = ("snr_db", "update_spectrum")

    def __init__(
        self,
        mse_model: AirCompMSEModel,
        rank_min: int = 1,
        lipschitz: float = 1.0,
        lr: float = 1.0,
        opt_term: float = 0.0,
        variance: float = 0.0,
        truncation_weight: float = 1.0,
        initial_step: int | None = None,
        per_module: bool = True,
        warm_start: bool = True,
        max_alternations: int = 3,
    ):
        super().__init__(rank_min=rank_min)
        _check_positive(lipschitz=lipschitz, lr=lr, truncation_weight=truncation_weight)
        if initial_step is not None and initial_step < 1:
            raise ValueError(f"`initial_step` ({initial_step}) must be >= 1 (or None).")
        if max_alternations < 1:
            raise ValueError(f"`max_alternations` ({max_alternations}) must be >= 1.")
        self.mse_model = mse_model
        self.required_observations = ("update_spectrum", *mse_model.required_observations)
        self.lipschitz, self.lr, self.truncation_weight = lipschitz, lr, truncation_weight
        self.opt_term, self.variance = opt_term, variance
        self.initial_step, self.per_module = initial_step, per_module
        self.warm_start, self.max_alternations = warm_start, max_alternations
        self._last: dict[str, float] = {}

    def bound(self, obs: Observation, ranks: dict[str, int]) -> GapBound:
        """The bound of this round (transceivers optimised for ``ranks``)."""
        modules = obs.modules
        spectrum = torch.stack([obs.update_spectrum[name].float().cpu() for name in modules])
        return GapBound(
            values_per_rank=torch.tensor([obs.values_per_rank(name) for name in modules]),
            tail=tail_energy(spectrum),
            unit_mse=self.mse_model.unit_mse(obs, ranks),
            full_values=self.mse_model.full_values(),
            value_power=1.0 if obs.update_value_power is None else obs.update_value_power,
            num_clients=obs.num_clients,
            lipschitz=self.lipschitz,
            lr=self.lr,
            opt_term=self.opt_term,
            variance=self.variance,
            truncation_weight=self.truncation_weight,
        )

    @override
    def act(self, obs: Observation) -> dict[str, int]:
        self.check_max_rank(obs.max_rank)
        if obs.update_spectrum is None:
            return self.clip(obs.ranks, obs.max_rank)
        modules = obs.modules
        start = ranks_tensor(obs.ranks, modules) if self.warm_start else None
        ranks = start if start is not None else torch.full((len(modules),), obs.max_rank)
        ranks = ranks.clamp(self.rank_min, obs.max_rank)
        step = self.initial_step or max(1, obs.max_rank // 2)
        moves, converged = 0, False  # alternations that changed the ranks
        bound = self.bound(obs, ranks_dict(ranks, modules))  # (a) transceivers for the start
        for _ in range(self.max_alternations):
            new = backtracking_search(  # (b) evaluate, (c) step / backtrack
                bound, ranks, self.rank_min, obs.max_rank, step, self.per_module
            )
            replanned = self.bound(obs, ranks_dict(new, modules))  # (a) for the new ranks
            # Accept only a true descent (transceivers re-planned at the new ranks): the
            # alternation then decreases the bound monotonically and cannot cycle.
            if torch.equal(new, ranks) or not replanned(new) < bound(ranks):
                converged = True
                break
            ranks, bound, moves = new, replanned, moves + 1
        self._last = {f"bound/{k}": float(v) for k, v in bound.terms(ranks).items()}
        self._last["bound/rank_moves"] = float(moves)
        self._last["bound/converged"] = float(converged)
        return ranks_dict(ranks, modules)

    @override
    def metrics(self) -> dict[str, float]:
        return dict(self._last)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"`{name}` ({value!r}) must be > 0.")
