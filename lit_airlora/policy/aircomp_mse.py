"""Aggregation-MSE models for rank selection: how noisy one over-the-air round is at full power."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from lit_airlora.channel.beamforming import Beamformer, ManifoldBeamformer
from lit_airlora.channel.fading import AWGN, SmallScale
from lit_airlora.channel.large_scale import LargeScale
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


class MimoAirCompMSE(AirCompMSEModel):
    """Multi-stream MIMO-OFDM AirComp (AirFL-LoRA's physical layer), on the round's channel.

    With ``channel_seed`` (the :class:`~lit_airlora.callbacks.over_the_air.OverTheAirAggregation`
    callback's ``seed``) and the round seed in the observation (the module's round plan), it
    draws exactly the round's channel the callback will draw, SNRs from ``large_scale``, fading
    and truncation (``truncation_threshold``) included, with the aggregation weights of the
    plan. Otherwise it plans on ``num_draws`` independent draws of ``fading`` at the observed
    SNRs (an estimate, no truncation, unit weights). Either way it optimises the receive
    beamformers and zero-forcing precoders as the callback does
    (:func:`lit_airlora.channel.aircomp_round.make_plan`; single antenna and one stream fall
    back to channel inversion) and returns the predicted per-real MSE ``||a_ms||^2`` at full
    power, averaged over subcarriers and streams, ``inf`` when every client is truncated.

    Ranks enter through the energy budget only: a payload of ``D`` reals has every SNR shifted
    by the same ``10 log10(D_full / D)`` dB, and the beamformer's objective is scale-invariant
    (every client's term scales alike), so step (a) returns the same transceivers for any ranks
    and the alternation of :class:`~lit_airlora.policy.backtracking.BacktrackingRankSelection`
    correctly stops after one pass with this model. Results are cached per round (and per
    observed SNRs and weights).

    Args:
        fading: Small-scale fading (``FlatMIMO``, ``OFDMTDL``...): antennas and subcarriers.
        ofdm_symbols: OFDM symbols per round (the channel-use budget).
        num_streams: Streams ``S`` per subcarrier (``<= min(num_rx, num_tx)``).
        beamformer: Receive beamformer (default: ``ManifoldBeamformer()``).
        num_draws: Fading draws averaged per round (without ``channel_seed``).
        seed: Seed of the independent draws (mixed with the round index).
        large_scale: The channel callback's SNR model (needed with ``channel_seed``).
        truncation_threshold: The channel callback's truncation threshold.
        channel_seed: The channel callback's ``seed``: plan on the round's own channel.
    """

    def __init__(
        self,
        fading: SmallScale,
        ofdm_symbols: int,
        num_streams: int = 1,
        beamformer: Beamformer | None = None,
        num_draws: int = 1,
        seed: int = 0,
        large_scale: LargeScale | None = None,
        truncation_threshold: float = 0.0,
        channel_seed: int | None = None,
    ):
        for name, value in (("ofdm_symbols", ofdm_symbols), ("num_draws", num_draws)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` ({value!r}) must be an integer >= 1.")
        if not 1 <= num_streams <= min(fading.num_rx, fading.num_tx):
            raise ValueError(
                f"`num_streams` ({num_streams}) must be in [1, min(num_rx, num_tx) = "
                f"{min(fading.num_rx, fading.num_tx)}]."
            )
        if channel_seed is not None and large_scale is None:
            raise ValueError(
                f"`channel_seed` ({channel_seed}) needs `large_scale`: the channel callback's SNR "
                "model, to draw the round's own channel."
            )
        if not truncation_threshold >= 0:
            raise ValueError(f"`truncation_threshold` ({truncation_threshold!r}) must be >= 0.")
        self.fading, self.ofdm_symbols, self.num_streams = fading, ofdm_symbols, num_streams
        self.beamformer = beamformer if beamformer is not None else ManifoldBeamformer()
        self.num_draws, self.seed = num_draws, seed
        self.large_scale, self.truncation_threshold = large_scale, float(truncation_threshold)
        self.channel_seed = channel_seed
        self._cache: tuple[tuple, float] | None = None

    def full_values(self) -> float:
        return 2.0 * self.num_streams * self.fading.num_subcarriers * self.ofdm_symbols

    def unit_mse(self, obs: Observation, ranks: Mapping[str, int]) -> float:
        own = self.channel_seed is not None and obs.round_seed is not None
        # The round's channel follows from its seed and weights; draws also from the SNRs.
        weights = tuple(sorted((obs.client_weights or {}).items()))
        snr = tuple(obs.require("snr_db").reshape(-1).tolist()) if not own else ()
        key = (obs.round_idx, obs.round_seed if own else None, weights, snr)
        if self._cache is None or self._cache[0] != key:
            mse = self._round_mse(obs) if own else self._draws_mse(obs)
            self._cache = (key, mse)
        return self._cache[1]

    def _round_mse(self, obs: Observation) -> float:
        """The round's own channel, as the over-the-air callback draws it."""
        from lit_airlora.channel import aircomp_round as air

        weights = obs.client_weights or {}
        clients = sorted(weights)
        keys = (int(obs.round_seed), int(self.channel_seed))
        channel = air.draw_channel(
            self.large_scale, self.fading, clients, weights, self.truncation_threshold,
            self.num_streams, keys, "cpu",
        )  # fmt: skip
        return self._plan_mse(channel, keys)

    def _draws_mse(self, obs: Observation) -> float:
        snr_db = obs.require("snr_db").double().cpu()
        draws = [self._draw_mse(snr_db, obs.round_idx, d) for d in range(self.num_draws)]
        return sum(draws) / len(draws)

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
        return self._plan_mse(channel, keys)

    def _plan_mse(self, channel, keys: tuple[int, ...]) -> float:
        from lit_airlora.channel import aircomp_round as air

        if not bool(channel.participating.any()):
            return float("inf")
        plan = air.make_plan(channel, self.num_streams, self.beamformer, keys)
        if not bool(plan.participating.any()):
            return float("inf")
        return float(plan.mse_per_real.mean())


class SisoAirCompMSE(MimoAirCompMSE):
    """Single-antenna AirComp with truncated channel inversion, on the round's fading.

    Channel inversion ``b_k = sqrt(eta) w_k / h_k``, ``eta = min_k P_k |h_k|^2 / w_k^2`` over the
    clients whose fading gain ``|g_k|^2`` clears ``truncation_threshold`` (Zhu et al., IEEE TWC
    2020), makes the received signal ``sqrt(eta) sum_k w_k x_k + n``; each real value of the
    estimated sum then has error variance ``1 / eta`` (the callback's
    ``channel/mse_normalised_theory``) when the payload fills the budget at two reals per
    complex channel use. With ``channel_seed`` (the over-the-air callback's ``seed``), its
    ``large_scale`` and ``fading``, and the round seed in the observation, the model draws the
    round's own SNRs, fading and truncation exactly as the
    :class:`~lit_airlora.callbacks.over_the_air.OverTheAirAggregation` callback will, with the
    plan's aggregation weights. Otherwise it plans on ``num_draws`` independent draws of
    ``fading`` at the observed SNRs (unit weights, no truncation); with ``AWGN`` (the default)
    that is the closed form ``1 / min_k SNR_k``.

    Args:
        channel_uses: Complex channel uses per round (the airtime budget).
        fading: Single-antenna small-scale fading (``AWGN``, ``RayleighBlock``): the callback's.
        large_scale: The channel callback's SNR model (needed with ``channel_seed``).
        truncation_threshold: The channel callback's truncation threshold.
        channel_seed: The channel callback's ``seed``: plan on the round's own channel.
        num_draws: Fading draws averaged per round (without ``channel_seed``).
        seed: Seed of the independent draws (mixed with the round index).
    """

    def __init__(
        self,
        channel_uses: int,
        fading: SmallScale | None = None,
        large_scale: LargeScale | None = None,
        truncation_threshold: float = 0.0,
        channel_seed: int | None = None,
        num_draws: int = 1,
        seed: int = 0,
    ):
        if isinstance(channel_uses, bool) or not isinstance(channel_uses, int) or channel_uses < 1:
            raise ValueError(f"`channel_uses` ({channel_uses!r}) must be an integer >= 1.")
        fading = fading if fading is not None else AWGN()
        if not isinstance(fading, SmallScale):
            raise TypeError(
                f"`fading` ({type(fading).__name__}) must be a SmallScale model (AWGN, "
                "RayleighBlock): the over-the-air callback's `fading`."
            )
        if (fading.num_rx, fading.num_tx) != (1, 1):
            raise ValueError(
                f"`fading` ({type(fading).__name__}) has {fading.num_rx} x {fading.num_tx} "
                "antennas; SisoAirCompMSE models one antenna each side: use MimoAirCompMSE."
            )
        super().__init__(
            fading,
            ofdm_symbols=1,
            num_draws=num_draws,
            seed=seed,
            large_scale=large_scale,
            truncation_threshold=truncation_threshold,
            channel_seed=channel_seed,
        )
        self.channel_uses = channel_uses

    def full_values(self) -> float:
        return 2.0 * self.channel_uses
