"""The rank-policy interface: observe, act (a rank per adapted module), learn from feedback."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from lit_airlora.policy import costs
from lit_airlora.policy.observation import Observation


@dataclass
class Feedback:
    """What happened in the round a policy chose ranks for.

    Attributes:
        round_idx: The round.
        train_loss: Training loss of the round, or None.
        val_loss: Validation loss after the round, or None.
        payload_bits: Bits one client uploaded for the chosen ranks (policy's cost model).
        metrics: The round's logged scalars (``channel/agg_nmse``, ``comm/uplink_bits``...).
    """

    round_idx: int
    train_loss: float | None = None
    val_loss: float | None = None
    payload_bits: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


class RankPolicy:
    """Chooses the active LoRA rank of every adapted module before a round.

    Subclasses implement :meth:`act`; learning ones also :meth:`update` and keep their networks,
    optimizers and replay buffers in :meth:`state_dict` (tensors and builtins only, so that
    checkpoints load with ``weights_only=True``). ``required_observations`` lists the optional
    :class:`Observation` fields :meth:`act` needs; the callback checks them at setup and
    computes the costly ones (``importance``, ``update_spectrum``) only when they are listed.

    Args:
        rank_min: Smallest rank the policy may choose (``>= 1``).
    """

    required_observations: tuple[str, ...] = ()

    def __init__(self, rank_min: int = 1):
        _check_rank_min(rank_min)
        self.rank_min = rank_min

    def check_max_rank(self, max_rank: int) -> None:
        """Raise if this policy cannot act for adapters allocated at ``max_rank``."""
        if self.rank_min > max_rank:
            raise ValueError(
                f"`rank_min` ({self.rank_min}) of {type(self).__name__} must be <= `max_rank` "
                f"({max_rank}) of the LoRA model: lower `rank_min` or raise the LoRA rank."
            )

    def act(self, obs: Observation) -> dict[str, int]:
        """Ranks for the coming round, every one in ``[rank_min, obs.max_rank]``."""
        raise NotImplementedError

    def update(self, obs: Observation, ranks: Mapping[str, int], feedback: Feedback) -> None:
        """Learn from the outcome of ``ranks`` chosen on ``obs`` (no-op unless learning)."""

    #: Whether :meth:`skip_round` may return True (the module must then support skipping).
    skips_rounds: bool = False

    def skip_round(self, obs: Observation, ranks: Mapping[str, int]) -> bool:
        """Whether the round with ``ranks`` must train nothing (AirLLM: infeasible payload)."""
        return False

    def payload_bits(self, ranks: Mapping[str, int], shapes: costs.Shapes) -> float:
        """Bits one client uploads for ``ranks``: float32 ``A`` and ``B`` rows (no extras)."""
        return float(costs.payload_bits(ranks, shapes, values_per_rank_extra=0))

    #: Whether :meth:`link_costs` prices uploads on a link model.
    has_link_model: bool = False

    def link_costs(
        self, bits: Tensor, snr_db: Tensor, bandwidth_hz: float | None
    ) -> dict[str, float]:
        """``comm/airtime_s`` and ``comm/energy_j`` of the round's uploads on the link the
        policy's cost model prices (``bits``, ``snr_db``: ``[K]``), or ``{}`` without one."""
        return {}

    def metrics(self) -> dict[str, float]:
        """Scalars about the last decision, logged under ``policy/`` when the round starts."""
        return {}

    def update_metrics(self) -> dict[str, float]:
        """Scalars about the last :meth:`update` (reward ...), logged under ``policy/``."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (nothing to restore for a stateless policy)."""

    def clip(self, ranks: Mapping[str, int], max_rank: int) -> dict[str, int]:
        """Ranks clipped into ``[rank_min, max_rank]``."""
        return {name: min(max(int(r), self.rank_min), max_rank) for name, r in ranks.items()}


def _check_rank_min(rank_min: int) -> None:
    if isinstance(rank_min, bool) or not isinstance(rank_min, int) or rank_min < 1:
        raise ValueError(f"`rank_min` ({rank_min!r}) must be an integer >= 1.")


def check_action(ranks: Mapping[str, int], obs: Observation, policy_name: str) -> None:
    """Raise if a policy's ranks miss a module or leave ``[1, max_rank]`` (a policy bug)."""
    missing = sorted(set(obs.ranks) - set(ranks))
    if missing:
        raise RuntimeError(f"{policy_name}.act returned no rank for modules {missing[:3]}.")
    bad = {name: r for name, r in ranks.items() if not 1 <= int(r) <= obs.max_rank}
    if bad:
        shown = dict(list(bad.items())[:3])
        raise RuntimeError(
            f"{policy_name}.act returned ranks outside [1, {obs.max_rank}]: {shown}."
        )
