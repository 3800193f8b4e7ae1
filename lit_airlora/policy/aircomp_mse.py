"""Aggregation-MSE models for rank selection: how noisy one over-the-air round is at full power."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lit_airlora.policy.observation import Observation


class AirCompMSEModel:
    """Per-value MSE of an over-the-air sum when the payload exactly fills the channel budget.

    :class:`lit_airlora.policy.gap_bound.GapBound` scales it with the payload: a payload of
    ``D`` reals spreads the round's energy over ``D`` values, so each value's MSE is
    ``unit_mse * D / full_values``. :meth:`unit_mse` is where a model optimises its
    transceivers for the given ranks (step (a) of AirFL-LoRA's alternating algorithm).
    """

    #: Observations the model reads.
    required_observations: tuple[str, ...] = ("snr_db",)

    def full_values(self) -> float:
        """Reals one round's channel-use budget carries at full power per symbol."""
        raise NotImplementedError

    def unit_mse(self, obs: Observation, ranks: Mapping[str, int]) -> float:
        """Per-value MSE (normalised units) of the sum of the clients' values at full power."""
        raise NotImplementedError


class SisoAirCompMSE(AirCompMSEModel):
    """Single-antenna AirComp with channel inversion to the weakest participating client.

    Channel inversion ``b_k = sqrt(eta) / h_k`` with ``eta = min_k SNR_k`` (large-scale SNR at
    full power, unit weights) turns the received signal into ``sqrt(eta) sum_k x_k + n``; dividing
    by ``sqrt(eta)``, each real value of the estimated sum has error variance ``1 / eta`` relative
    to one client's value power when the payload fills the budget at two reals per complex
    channel use (signal and noise split evenly over the real and imaginary dimensions)
    [assumed: unit weights, no truncation of deep fades; see specs/channels.md].

    Args:
        channel_uses: Complex channel uses per round (the airtime budget).
    """

    def __init__(self, channel_uses: int):
        if isinstance(channel_uses, bool) or not isinstance(channel_uses, int) or channel_uses < 1:
            raise ValueError(f"`channel_uses` ({channel_uses!r}) must be an integer >= 1.")
        self.channel_uses = channel_uses

    def full_values(self) -> float:
        return 2.0 * self.channel_uses

    def unit_mse(self, obs: Observation, ranks: Mapping[str, int]) -> float:
        snr = torch.pow(10.0, obs.require("snr_db").double() / 10.0)
        return float(1.0 / snr.min())
