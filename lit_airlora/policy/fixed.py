"""The fixed-rank baseline: the same rank for every module in every round."""

from __future__ import annotations

from typing_extensions import override

from lit_airlora.policy.base import RankPolicy
from lit_airlora.policy.observation import Observation


class FixedRank(RankPolicy):
    """Plain LoRA at rank ``rank`` everywhere, whatever the channel (AirLLM's fixed baseline).

    Args:
        rank: The rank of every adapted module (``1 <= rank <= max_rank``).
    """

    def __init__(self, rank: int):
        super().__init__(rank_min=1)
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"`rank` ({rank!r}) must be an integer >= 1.")
        self.rank = rank

    @override
    def check_max_rank(self, max_rank: int) -> None:
        if self.rank > max_rank:
            raise ValueError(
                f"`rank` ({self.rank}) of FixedRank must be <= `max_rank` ({max_rank}) of the "
                "LoRA model: lower `rank` or raise the LoRA rank."
            )

    @override
    def act(self, obs: Observation) -> dict[str, int]:
        self.check_max_rank(obs.max_rank)
        return dict.fromkeys(obs.modules, self.rank)
