"""AirLLM's environment step in numbers: state vector, normalised cost, feasibility and reward.

One environment step is one round (one epoch; ``local_steps: 1`` is the paper's step-level
loop). The cost model is the paper's capacity accounting (see :mod:`lit_airlora.policy.costs`):
``c = 32 sum_l r_l (d_in,l + d_out,l + 1) / (B log2(1 + SNR) tau)``, feasible when ``c <= 1``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import torch
from torch import Tensor

from lit_airlora.channel.costs import shannon_rate_bps
from lit_airlora.policy import costs
from lit_airlora.policy.checks import check_positive, check_range
from lit_airlora.policy.observation import Observation, airllm_state_vector


class AirLLMEnvironment:
    """State, cost and reward of AirLLM's rank-selection MDP (Yang et al., arXiv 2507.11515).

    Args:
        bandwidth_hz: Link bandwidth ``B`` in Hz when no channel callback reports one.
        latency_budget_s: Time ``tau`` one upload may take, in seconds.
        bits_per_value: Bits per transmitted value (32: float32).
        values_per_rank_extra: Values per rank besides the factor rows (1: the singular value
            of SVD-form adapters, as in the paper; 0 for plain LoRA).
        lambda_comm: Weight of the cost in the reward ``-loss - lambda_comm c``.
        infeasible_penalty: Penalty weight of an infeasible step: reward
            ``-infeasible_penalty c - lambda_comm c``.
        snr_range_db: ``(low, high)`` SNR range for min-max normalisation of the state.
        bandwidth_range_hz: ``(low, high)`` bandwidth range for the state (equal: 0.5).
        tx_power_w: Transmit power of a client in watts (energy accounting:
            ``energy = tx_power_w * airtime``).
    """

    def __init__(
        self,
        bandwidth_hz: float = 100e6,
        latency_budget_s: float = 1.0,
        bits_per_value: int = 32,
        values_per_rank_extra: int = 1,
        lambda_comm: float = 0.1,
        infeasible_penalty: float = 10.0,
        snr_range_db: tuple[float, float] = (-5.0, 15.0),
        bandwidth_range_hz: tuple[float, float] = (100e6, 100e6),
        tx_power_w: float = 0.2,
    ) -> None:
        check_positive("bandwidth_hz", bandwidth_hz)
        check_positive("tx_power_w", tx_power_w)
        check_positive("latency_budget_s", latency_budget_s)
        check_positive("bits_per_value", bits_per_value)
        check_positive("infeasible_penalty", infeasible_penalty)
        if not (math.isfinite(lambda_comm) and lambda_comm >= 0):
            raise ValueError(f"`lambda_comm` ({lambda_comm!r}) must be a finite number >= 0.")
        if isinstance(values_per_rank_extra, bool) or values_per_rank_extra not in (0, 1):
            raise ValueError(
                f"`values_per_rank_extra` ({values_per_rank_extra!r}) must be 0 (plain LoRA) "
                "or 1 (SVD-form adapters, as in AirLLM)."
            )
        check_range("snr_range_db", snr_range_db)
        check_range("bandwidth_range_hz", bandwidth_range_hz, positive=True)
        self.bandwidth_hz, self.latency_budget_s = float(bandwidth_hz), float(latency_budget_s)
        self.bits_per_value, self.values_per_rank_extra = bits_per_value, values_per_rank_extra
        self.lambda_comm, self.infeasible_penalty = float(lambda_comm), float(infeasible_penalty)
        self.snr_range_db = (float(snr_range_db[0]), float(snr_range_db[1]))
        self.bandwidth_range_hz = (float(bandwidth_range_hz[0]), float(bandwidth_range_hz[1]))
        self.tx_power_w = float(tx_power_w)

    def state(self, obs: Observation) -> Tensor:
        """``[4 + L]`` float32: [snr, bandwidth, token entropy, unk rate, r_l / r_max ...]."""
        if obs.bandwidth_hz is None:
            obs = dataclasses.replace(obs, bandwidth_hz=self.bandwidth_hz)
        return airllm_state_vector(obs, self.snr_range_db, self.bandwidth_range_hz)

    def rates_bps(self, snr_db: Tensor, bandwidth_hz: float | None = None) -> Tensor:
        """``[K]`` float64 Shannon rate of each client's link (``bandwidth_hz``: else ``B``)."""
        bandwidth = bandwidth_hz if bandwidth_hz is not None else self.bandwidth_hz
        return shannon_rate_bps(bandwidth, snr_db).reshape(-1)

    def capacity_bps(self, obs: Observation) -> float:
        """Worst participating client's Shannon capacity (the round waits for the slowest)."""
        return float(self.rates_bps(obs.require("snr_db"), obs.bandwidth_hz).min())

    def link_costs(
        self, bits: Tensor, snr_db: Tensor, bandwidth_hz: float | None = None
    ) -> dict[str, float]:
        """Airtime and energy of uploads on the links this cost model prices.

        Client ``k`` sends its ``bits[k]`` at its Shannon rate ``C_k`` (the rate :meth:`cost`
        prices), in parallel with the others: the round's airtime is ``max_k bits_k / C_k``
        (``c tau`` when every client sends the priced payload) and its energy
        ``sum_k tx_power_w bits_k / C_k``.

        Args:
            bits: ``[K]`` bits each client of the round sent (0: it sent nothing).
            snr_db: ``[K]`` (or ``[1]``: shared) SNR in dB the rates were priced at.
            bandwidth_hz: Bandwidth of each link (None: ``bandwidth_hz`` of this model).
        """
        airtime = bits.double() / self.rates_bps(snr_db, bandwidth_hz)  # (K,)
        return {
            "comm/airtime_s": float(airtime.max()) if airtime.numel() else 0.0,
            "comm/energy_j": float(self.tx_power_w * airtime.sum()),
        }

    def payload_bits(self, ranks: Mapping[str, int], shapes: costs.Shapes) -> float:
        return float(
            costs.payload_bits(ranks, shapes, self.bits_per_value, self.values_per_rank_extra)
        )

    def cost(self, ranks: Mapping[str, int], obs: Observation) -> float:
        """Normalised cost ``c = bits / (C tau)`` of ``ranks`` on this round's link."""
        bits = self.payload_bits(ranks, obs.shapes)
        return float(costs.normalised_cost(bits, self.capacity_bps(obs), self.latency_budget_s))

    def max_uniform_rank(self, obs: Observation) -> float:
        """Real-valued uniform rank that exactly fills the budget (the paper's "about 1.4")."""
        return costs.max_uniform_rank(
            obs.shapes,
            self.capacity_bps(obs),
            self.latency_budget_s,
            self.bits_per_value,
            self.values_per_rank_extra,
        )

    def reward(self, task_loss: float | None, cost: float) -> float:
        """``-loss - lambda c`` (feasible) or ``-penalty c - lambda c`` (infeasible, no step)."""
        if cost > 1.0 or task_loss is None or not math.isfinite(task_loss):
            return -self.infeasible_penalty * cost - self.lambda_comm * cost
        return -task_loss - self.lambda_comm * cost


def encode_ranks(ranks: Tensor, rank_min: int, rank_max: int) -> Tensor:
    """Ranks ``[..., L]`` int to ``[-1, 1]`` float32 (the inverse of :func:`decode_ranks`).

    A rank maps to the lower edge of its decoding bin, as in the official code, nudged 1e-6
    into the bin so that float rounding cannot decode it one rank lower.
    """
    span = max(rank_max - rank_min, 1)
    return (2.0 * (ranks.float() - rank_min) / span - 1.0 + 1e-6).clamp(max=1.0)


def decode_ranks(x: Tensor, rank_min: int, rank_max: int) -> Tensor:
    """``r = clip(floor((x + 1) / 2 (r_max - r_min)) + r_min, r_min, r_max)``: ``[..., L]`` int64.

    ``x = -1`` maps to ``r_min`` and ``x = 1`` to ``r_max`` exactly.
    """
    scaled = torch.floor((x.clamp(-1.0, 1.0) + 1.0) / 2.0 * (rank_max - rank_min))
    return (scaled.long() + rank_min).clamp(rank_min, rank_max)
