"""What a rank policy sees before a round: channel state, training state, adapter state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

#: Who fills each optional observation, for the error raised when a policy needs a missing one.
PROVIDERS: dict[str, str] = {
    "snr_db": (
        "a channel callback that keeps a per-round SNR history, or `large_scale` on "
        "RankPolicyCallback (e.g. lit_airlora.channel.large_scale.FixedSNR)"
    ),
    "capacity_bps": (
        "an SNR source (see `snr_db`) plus a bandwidth: `bandwidth_hz` on RankPolicyCallback "
        "or on the channel callback"
    ),
    "bandwidth_hz": "`bandwidth_hz` on RankPolicyCallback or on the channel callback",
    "train_loss": "the LightningModule (`observe()`) or a logged `train_loss` metric",
    "val_loss": "the LightningModule (`observe()`) or a logged `val_loss` metric",
    "token_entropy": "the LightningModule (`observe()`)",
    "importance": "RankPolicyCallback (from the live LoRA factors)",
    "update_spectrum": "RankPolicyCallback (from the previous round's adapter update)",
    "update_value_power": "RankPolicyCallback (from the previous round's adapter update)",
}


@dataclass
class Observation:
    """The state a rank policy acts on at the start of a round.

    Attributes:
        round_idx: Zero-based communication round about to start.
        ranks: Current active rank per adapted module (dict order = module order).
        max_rank: Rank the LoRA factors are allocated at.
        shapes: Module -> ``(d_in, d_out)`` of the adapted linear layer.
        snr_db: ``[K]`` float, SNR of each participating client this round (dB), or None.
        capacity_bps: ``[K]`` float64, Shannon capacity of each client's link, or None.
        bandwidth_hz: Bandwidth the capacity refers to, or None.
        train_loss: Last round's training loss, or None.
        val_loss: Last validation loss, or None.
        token_entropy: Normalised token entropy of the recent batches, or None.
        importance: Module -> ``[max_rank]`` component importance ``||b_i|| ||a_i||`` of the
            live factors (zero for inactive components), or None.
        update_spectrum: Module -> ``[max_rank]`` singular values (descending) of the previous
            round's update of the adapted weight ``scaling * B A``, or None before round 1.
        update_value_power: Mean squared value of one client's factor update last round.
        round_seed: The round's shared seed (``pl_module.round_plan.seed``): a model that knows
            the channel callback's seed can draw the round's own channel, or None.
        client_weights: Aggregation weight of every client of the round (the round plan's),
            or None.
        sent_factors: LoRA factors a client sends (``"lora_A"``, ``"lora_B"``): both for FedIT,
            ``("lora_B",)`` under FFA-LoRA; payload sizes count only these.
        scalars: Every other scalar the module reports (``observe()``), e.g. ``unk_rate``.
    """

    round_idx: int
    ranks: dict[str, int]
    max_rank: int
    shapes: dict[str, tuple[int, int]]
    snr_db: Tensor | None = None
    capacity_bps: Tensor | None = None
    bandwidth_hz: float | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    token_entropy: float | None = None
    importance: dict[str, Tensor] | None = None
    update_spectrum: dict[str, Tensor] | None = None
    update_value_power: float | None = None
    round_seed: int | None = None
    client_weights: dict[int, float] | None = None
    sent_factors: tuple[str, ...] = ("lora_A", "lora_B")
    scalars: dict[str, float] = field(default_factory=dict)

    def values_per_rank(self, module: str) -> int:
        """Reals one rank of ``module`` puts on the air: ``d_in`` (A row) + ``d_out`` (B column)."""
        d_in, d_out = self.shapes[module]
        return d_in * ("lora_A" in self.sent_factors) + d_out * ("lora_B" in self.sent_factors)

    @property
    def modules(self) -> list[str]:
        """Adapted modules in a fixed order (the order of ``ranks``)."""
        return list(self.ranks)

    def require(self, name: str):
        """The observation ``name``; raises naming its provider when it is missing this round."""
        value = getattr(self, name)
        if value is None:
            raise RuntimeError(
                f"Round {self.round_idx}: the observation `{name}` is missing. It comes from "
                f"{PROVIDERS.get(name, 'the rank-policy callback')}."
            )
        return value

    @property
    def num_clients(self) -> int:
        """Participating clients this round (1 when no channel state is known)."""
        return 1 if self.snr_db is None else int(self.snr_db.numel())


def optional_observations() -> tuple[str, ...]:
    """Names of the observations that may be missing (those a policy can require)."""
    return tuple(f.name for f in fields(Observation) if f.name in PROVIDERS)


def check_required(required: tuple[str, ...], available: set[str], policy_name: str) -> None:
    """Raise naming the first required observation nobody provides, and who could provide it."""
    known = set(optional_observations())
    for name in required:
        if name not in known:
            raise ValueError(
                f"`{policy_name}.required_observations` names {name!r}, which is not an "
                f"observation; valid names: {sorted(known)}."
            )
        if name not in available:
            raise ValueError(
                f"Policy `{policy_name}` requires the observation `{name}`, which nothing in "
                f"this run provides. It comes from {PROVIDERS[name]}."
            )


def airllm_state_vector(
    obs: Observation,
    snr_range_db: tuple[float, float],
    bandwidth_range_hz: tuple[float, float],
) -> Tensor:
    """AirLLM's state ``[snr, bandwidth, entropy, unk_rate, r_1/r_max, ...]``: ``[4 + L]`` float32.

    SNR and bandwidth are min-max normalised over their ranges (0.5 for a degenerate range, as
    in the official code; not clipped, so an SNR outside the range shows as such); with several
    clients the worst SNR is used. The unknown-token rate is the module's ``round/unk_rate``
    (see :mod:`lit_airlora.federated.token_stats`). Missing values are 0.
    """
    snr = float(obs.snr_db.min()) if obs.snr_db is not None else snr_range_db[0]
    bandwidth = obs.bandwidth_hz if obs.bandwidth_hz is not None else bandwidth_range_hz[0]
    head = [
        _min_max(snr, snr_range_db),
        _min_max(bandwidth, bandwidth_range_hz),
        obs.token_entropy or 0.0,
        obs.scalars.get("round/unk_rate", obs.scalars.get("unk_rate", 0.0)),
    ]
    ranks = [obs.ranks[name] / obs.max_rank for name in obs.modules]
    return torch.tensor(head + ranks, dtype=torch.float32)


def _min_max(value: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return 0.5 if high == low else (value - low) / (high - low)


def ranks_tensor(ranks: Mapping[str, int], modules: list[str]) -> Tensor:
    """``[L]`` int64 ranks in ``modules`` order."""
    return torch.tensor([int(ranks[name]) for name in modules], dtype=torch.int64)


def ranks_dict(ranks: Tensor, modules: list[str]) -> dict[str, int]:
    """Module -> int rank from an ``[L]`` tensor in ``modules`` order."""
    return {name: int(rank) for name, rank in zip(modules, ranks.tolist(), strict=True)}
