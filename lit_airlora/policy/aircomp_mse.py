"""Aggregation-MSE models for rank selection: how noisy one over-the-air round is at full power."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from lit_airlora.channel.beamforming import Beamformer, ManifoldBeamformer
from lit_airlora.channel.fading import SmallScale
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


class MimoAirCompMSE(AirCompMSEModel):
    """Multi-stream MIMO-OFDM AirComp (AirFL-LoRA's physical layer), on fresh fading draws.

    For the round's clients (SNRs from the observation, unit weights) it draws the small-scale
    fading, optimises the receive beamformers and zero-forcing precoders exactly as
    :class:`~lit_airlora.callbacks.over_the_air.OverTheAirAggregation` does
    (:func:`lit_airlora.channel.aircomp_round.make_plan`; single antenna and one stream fall
    back to channel inversion), and returns the predicted per-real MSE ``||a_ms||^2`` averaged
    over subcarriers, streams and ``num_draws`` draws. The beamformers do not depend on the
    ranks (a longer payload only takes more OFDM symbols), so step (a) of the alternation gives
    the same transceivers for any ranks: the result is cached per round.

    Args:
        fading: Small-scale fading (``FlatMIMO``, ``OFDMTDL``...): antennas and subcarriers.
        ofdm_symbols: OFDM symbols per round (the channel-use budget).
        num_streams: Streams ``S`` per subcarrier (``<= min(num_rx, num_tx)``).
        beamformer: Receive beamformer (default: ``ManifoldBeamformer()``).
        num_draws: Fading draws averaged per round.
        seed: Seed of the draws (mixed with the round index).
    """

    def __init__(
        self,
        fading: SmallScale,
        ofdm_symbols: int,
        num_streams: int = 1,
        beamformer: Beamformer | None = None,
        num_draws: int = 1,
        seed: int = 0,
    ):
        for name, value in (("ofdm_symbols", ofdm_symbols), ("num_draws", num_draws)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` ({value!r}) must be an integer >= 1.")
        if not 1 <= num_streams <= min(fading.num_rx, fading.num_tx):
            raise ValueError(
                f"`num_streams` ({num_streams}) must be in [1, min(num_rx, num_tx) = "
                f"{min(fading.num_rx, fading.num_tx)}]."
            )
        self.fading, self.ofdm_symbols, self.num_streams = fading, ofdm_symbols, num_streams
        self.beamformer = beamformer if beamformer is not None else ManifoldBeamformer()
        self.num_draws, self.seed = num_draws, seed
        self._cache: tuple[tuple, float] | None = None

    def full_values(self) -> float:
        return 2.0 * self.num_streams * self.fading.num_subcarriers * self.ofdm_symbols

    def unit_mse(self, obs: Observation, ranks: Mapping[str, int]) -> float:
        snr_db = obs.require("snr_db").double().cpu()
        key = (obs.round_idx, tuple(snr_db.tolist()))
        if self._cache is None or self._cache[0] != key:
            draws = [self._draw_mse(snr_db, obs.round_idx, d) for d in range(self.num_draws)]
            self._cache = (key, sum(draws) / len(draws))
        return self._cache[1]

    def _draw_mse(self, snr_db: Tensor, round_idx: int, draw: int) -> float:
        from lit_airlora.channel import aircomp_round as air

        ids = list(range(snr_db.numel()))
        keys = (self.seed, round_idx, draw)
        g = self.fading.draw_clients(ids, (*keys, air.FADING_STREAM), "cpu")  # (K, N_r, N_t, M)
        g = g.permute(0, 3, 1, 2).to(torch.complex128)  # (K, M, N_r, N_t)
        everyone = torch.ones(len(ids), dtype=torch.bool)
        channel = air.RoundChannel(
            ids, torch.ones(len(ids), dtype=torch.float64), snr_db, g, everyone
        )
        plan = air.make_plan(channel, self.num_streams, self.beamformer, keys)
        if not bool(plan.participating.any()):
            return float("inf")
        return float(plan.mse_per_real.mean())
