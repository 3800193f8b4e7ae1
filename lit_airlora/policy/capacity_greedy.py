"""Capacity-greedy uniform rank: the largest rank everywhere whose payload fits the link."""

from __future__ import annotations

from collections.abc import Mapping

from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lit_airlora.channel.costs import shannon_rate_bps
from lit_airlora.policy import costs
from lit_airlora.policy.base import RankPolicy
from lit_airlora.policy.observation import Observation


class CapacityGreedyUniform(RankPolicy):
    """The largest uniform rank whose payload fits one round's capacity budget (AirLLM baseline).

    With AirLLM's cost model (Yang et al., arXiv 2507.11515), a uniform rank ``r`` costs
    ``bits_per_value * r * sum_l (d_in,l + d_out,l + values_per_rank_extra)`` bits and is
    feasible when that is at most ``C * latency_budget_s``, ``C = bandwidth_hz log2(1 + SNR)``.
    With several participating clients the round waits for the slowest upload, so the budget is
    the worst participating client's capacity. The rank is then clipped to ``max_rank``. When
    even ``rank_min`` does not fit, the policy returns ``rank_min`` and logs a warning (the round
    overruns its latency budget), or raises with ``strict=True``.

    Args:
        rank_min: Smallest rank; returned (or an error raised) when nothing fits.
        bandwidth_hz: Link bandwidth ``B`` in Hz (AirLLM: 100 MHz).
        latency_budget_s: Time ``tau`` one upload may take, in seconds (AirLLM: 1 s).
        bits_per_value: Bits per transmitted value (32 for float32).
        values_per_rank_extra: Values per rank besides the two factor rows: 1 for AirLLM's
            SVD-form adapters (the singular value), 0 for plain LoRA ``A``, ``B``.
        strict: Raise instead of warning when ``rank_min`` does not fit.
    """

    required_observations = ("snr_db",)

    def __init__(
        self,
        rank_min: int = 1,
        bandwidth_hz: float = 100e6,
        latency_budget_s: float = 1.0,
        bits_per_value: int = 32,
        values_per_rank_extra: int = 1,
        strict: bool = False,
    ):
        super().__init__(rank_min=rank_min)
        _check_positive("bandwidth_hz", bandwidth_hz)
        _check_positive("latency_budget_s", latency_budget_s)
        _check_positive("bits_per_value", bits_per_value)
        if values_per_rank_extra < 0:
            raise ValueError(f"`values_per_rank_extra` ({values_per_rank_extra}) must be >= 0.")
        self.bandwidth_hz = bandwidth_hz
        self.latency_budget_s = latency_budget_s
        self.bits_per_value = bits_per_value
        self.values_per_rank_extra = values_per_rank_extra
        self.strict = strict
        self._last: dict[str, float] = {}

    @override
    def act(self, obs: Observation) -> dict[str, int]:
        self.check_max_rank(obs.max_rank)
        capacity = float(shannon_rate_bps(self.bandwidth_hz, obs.require("snr_db")).min())
        fit = costs.largest_feasible_uniform_rank(
            obs.shapes,
            capacity,
            self.latency_budget_s,
            self.bits_per_value,
            self.values_per_rank_extra,
        )
        if fit < self.rank_min:
            self._on_infeasible(obs, capacity)
        rank = min(max(fit, self.rank_min), obs.max_rank)
        ranks = dict.fromkeys(obs.modules, rank)
        bits = self.payload_bits(ranks, obs.shapes)
        cost = costs.normalised_cost(bits, capacity, self.latency_budget_s)
        self._last = {"capacity_bps": capacity, "cost": float(cost)}
        return ranks

    def _on_infeasible(self, obs: Observation, capacity_bps: float) -> None:
        message = (
            f"Round {obs.round_idx}: even `rank_min` ({self.rank_min}) does not fit the budget "
            f"(worst capacity {capacity_bps:.4g} bit/s x {self.latency_budget_s} s)."
        )
        if self.strict:
            raise RuntimeError(message + " Lower `rank_min`, or set `strict: false`.")
        rank_zero_warn(f"{message} Using rank_min; the upload overruns its latency budget.")

    @override
    def payload_bits(self, ranks: Mapping[str, int], shapes: costs.Shapes) -> float:
        return float(
            costs.payload_bits(ranks, shapes, self.bits_per_value, self.values_per_rank_extra)
        )

    @override
    def metrics(self) -> dict[str, float]:
        return dict(self._last)


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"`{name}` ({value!r}) must be > 0.")
