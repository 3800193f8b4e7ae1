"""Over-the-air aggregation (AirComp) of the clients' LoRA updates, as a Lightning callback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from typing_extensions import override

from lit_airlora.callbacks.figure_logging import log_figure
from lit_airlora.callbacks.remote_link import RemoteLinkMixin
from lit_airlora.channel import aircomp_round as air
from lit_airlora.channel.beamforming import Beamformer, ManifoldBeamformer
from lit_airlora.channel.checks import check_int_at_least, check_nonnegative, check_positive
from lit_airlora.channel.energy_budget import energy_shift_db
from lit_airlora.channel.fading import SmallScale
from lit_airlora.channel.figures import channel_history_figure
from lit_airlora.channel.large_scale import LargeScale
from lit_airlora.channel.normalise import ClientValues, module_names, num_ofdm_symbols
from lit_airlora.federated.plan import RoundPlan
from lit_airlora.federated.round import aggregation_error
from lit_airlora.federated.upload import RoundContext, Upload
from lit_airlora.policy.channel_state import SNRReporter
from lit_airlora.seeding import make_generator


class OverTheAirAggregation(RemoteLinkMixin, SNRReporter):
    """Analog over-the-air aggregation of the uploads (fuses the transmit and aggregate stages).

    All clients of a round transmit their normalised updates at once on the same resources and
    the server receives the superposition (Nazer and Gastpar's computation over multiple-access
    channels; Zhu et al., IEEE TWC 2020 for federated learning). Single antenna: truncated
    channel inversion ``b_k = sqrt(eta) w_k / h_k``, ``eta = min_k P_k |h_k|^2 / w_k^2``, estimate
    ``y / sqrt(eta)``. MIMO-OFDM (AirFL-LoRA, Sun et al., IEEE TWC 2025): ``S`` streams per
    subcarrier, zero-forcing precoders and a receive beamformer per subcarrier (optimised on the
    sphere by :class:`~lit_airlora.channel.beamforming.ManifoldBeamformer`). Each client sends,
    per tensor, values normalised by a shared scale with its mean and deviation as side
    information; the estimate of ``sum_k w_k x_k`` goes through the aggregator's ``finalize``
    (division by the participating weight). Clients in a deep fade sit the round out. DDP ranks
    sum their clients' received signals with ``ctx.reduce``; channels and the one receiver-noise
    draw come from generators seeded by the round seed, so every rank computes the same result.

    Noise convention: transmit power is normalised to each client's budget (``tx_power_w``
    watts) and the receiver noise is ``CN(0, 1)``, so a client's channel is
    ``sqrt(10^(snr_db/10)) g`` with unit-power fading ``g``. Energies use ``tx_power_w`` and one
    channel use lasting ``1 / bandwidth_hz`` seconds.

    Args:
        large_scale: Per-client average SNR model (``FixedSNR``, ``UniformSNR``, ``PathLossSNR``).
        fading: Small-scale fading (``AWGN``, ``RayleighBlock``, ``FlatMIMO``, ``OFDMTDL``,
            ``OFDMCDL``); its ``num_rx`` / ``num_tx`` are the server / client antennas.
        tx_power_w: Client transmit power budget in watts (energy accounting).
        bandwidth_hz: Bandwidth in Hz; one complex channel use per antenna lasts ``1 / B``.
        truncation_threshold: Small-scale power gain (unit mean; ``|g|^2`` single antenna, the
            ``S``-th squared singular value MIMO) below which a client sits the round out.
        num_streams: Streams ``S`` per subcarrier (``<= min(num_rx, num_tx)``).
        beamformer: Receive beamformer for MIMO (ignored with one antenna and one stream).
        receiver_noise: Add receiver noise (``False``: infinite SNR, to check the transceivers).
        seed: Seed mixed with the round seed for this channel's draws.
        energy_budget_symbols: Energy budget per round, as OFDM symbols at full power
            (``None``: every payload is sent at full power, so airtime grows with it). With a
            budget, a payload of ``D`` reals gets ``2 S M N / D`` times the energy per value of one
            that fills ``N`` symbols (see :mod:`lit_airlora.channel.energy_budget`): the rank
            trade-off of AirFL-LoRA's rank selection.
        remote_mode: In a LightningModule other than ours (remote fine-tuning), whether the
            received adapter replaces the trained one (``"replace"``) or is kept beside it and
            validated (``"shadow"``).
    """

    stage = "transmit"
    aggregates = True

    def __init__(
        self,
        large_scale: LargeScale,
        fading: SmallScale,
        tx_power_w: float = 0.2,
        bandwidth_hz: float = 1e6,
        truncation_threshold: float = 0.05,
        num_streams: int = 1,
        beamformer: Beamformer | None = None,
        receiver_noise: bool = True,
        seed: int = 0,
        energy_budget_symbols: int | None = None,
        remote_mode: str = "replace",
    ) -> None:
        _check_type("large_scale", large_scale, LargeScale)
        _check_type("fading", fading, SmallScale)
        check_positive("tx_power_w", tx_power_w)
        check_positive("bandwidth_hz", bandwidth_hz)
        check_nonnegative("truncation_threshold", truncation_threshold)
        _check_streams(num_streams, fading)
        self.large_scale, self.fading = large_scale, fading
        self.tx_power_w, self.bandwidth_hz = float(tx_power_w), float(bandwidth_hz)
        self.truncation_threshold, self.num_streams = float(truncation_threshold), num_streams
        self.beamformer = beamformer if beamformer is not None else ManifoldBeamformer()
        _check_type("beamformer", self.beamformer, Beamformer)
        self.receiver_noise, self.seed = receiver_noise, int(seed)
        if energy_budget_symbols is not None:
            check_int_at_least("energy_budget_symbols", energy_budget_symbols, 1)
        self.energy_budget_symbols = energy_budget_symbols
        self.remote_mode = remote_mode
        self._check_remote()
        self.history: list[dict[str, Any]] = []

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(seed=self.seed)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        aggregator = getattr(pl_module, "aggregator", None)
        if aggregator is not None:
            check_linear_aggregator(aggregator)
        self.fading.setup(pl_module.device)

    @override
    def on_upload_transmit(
        self, trainer: Trainer, pl_module: LightningModule, ctx: RoundContext
    ) -> None:
        """Transmit every upload over the air and set ``ctx.aggregate`` to the estimate."""
        check_linear_aggregator(ctx.aggregator)
        aggregate, metrics, record = self.aggregate_over_the_air(ctx)
        if self.energy_budget_symbols is not None:
            metrics["channel/energy_shift_db"] = self._shift_db
        ctx.aggregate = aggregate
        ctx.metrics.update(metrics)
        self.history.append(record)

    def aggregate_over_the_air(self, ctx: RoundContext) -> tuple[dict, dict, dict]:
        """The round's aggregate estimate, its metrics, and the history record."""
        template = ctx.global_adapter
        names = [n for n in template if ctx.aggregator.trainable(n)]
        keys = (ctx.generator_seed, self.seed)
        device = next(iter(template.values())).device
        self._shift_db = 0.0
        channel = air.draw_channel(
            self.large_scale, self.fading, ctx.round_clients, ctx.client_weights,
            self.truncation_threshold, self.num_streams, keys, device,
        )  # fmt: skip
        if not bool(channel.participating.any()):
            return self._all_truncated(ctx, channel, names)
        modules = module_names(names)
        clients = [client_values(u, names) for u in ctx.uploads]
        side = ctx.reduce(air.side_information(clients, channel, names, modules))
        payload = air.make_payload(side, channel.participating, names, modules, template)
        channel.energy_shift_db = self._shift_db = self.energy_shift_db(payload.num_values)
        plan = air.make_plan(channel, self.num_streams, self.beamformer, keys)
        means = air.side_means(plan, channel, clients, payload)
        parts = mean_sums(ctx.uploads, means, ctx.aggregator, template)
        parts.update(air.local_transmission(plan, channel, clients, payload))
        reduced = ctx.reduce(parts)  # one all-reduce: side-information sums and the signal
        noise = make_generator(*keys, air.NOISE_STREAM, device=device)
        estimate = air.receive(plan, reduced, payload, noise if self.receiver_noise else None)
        total_weight = sum(ctx.client_weights[c] for c in ctx.round_clients)
        sums = air.server_sums(reduced, estimate, total_weight)
        aggregate = _to_template(ctx.aggregator.finalize(sums), template)
        if not all(bool(torch.isfinite(t).all()) for t in aggregate.values()):
            rank_zero_warn(f"Round {ctx.round_idx}: non-finite over-the-air estimate; no update.")
            aggregate, metrics, record = self._all_truncated(ctx, channel, names)
            metrics["channel/nonfinite"] = record["channel/nonfinite"] = 1.0
            return aggregate, metrics, record
        return self._report(ctx, channel, plan, payload, reduced, aggregate)

    def energy_shift_db(self, payload_reals: int) -> float:
        """Energy per value (dB against full power) of a ``payload_reals`` payload: 0 without a
        budget. The payload is what the participating clients superpose (truncated clients send
        nothing, so they do not lengthen it)."""
        if self.energy_budget_symbols is None:
            return 0.0
        return energy_shift_db(
            self.energy_budget_symbols, self.num_streams, self.fading.num_subcarriers, payload_reals
        )

    def _report(self, ctx, channel, plan, payload, reduced, aggregate) -> tuple[dict, dict, dict]:
        num_subcarriers, _, num_streams = plan.combiner.shape
        symbols = num_ofdm_symbols(payload.num_values, num_subcarriers, num_streams)
        channel_uses = symbols * num_subcarriers
        participants = int(plan.participating.sum())
        energy_j = reduced[air.ENERGY_KEY] * self.tx_power_w / self.bandwidth_hz  # (K,)
        metrics = {
            **_snr_metrics(channel.snr_db),
            **aggregation_error(aggregate, ctx.ideal_aggregate),
            "channel/participating": float(participants),
            "channel/truncated": float(len(channel.client_ids) - participants),
            "channel/all_truncated": 0.0,
            "channel/eta": float(plan.eta.mean()),
            "channel/mse_normalised_theory": float(plan.mse_per_real.mean()),
            "comm/channel_uses": float(channel_uses),
            "comm/airtime_s": channel_uses / self.bandwidth_hz,
            "comm/energy_j": float(energy_j.sum()),
            "comm/side_info_values": float(2 * len(payload.names) * participants),
        }
        record = _record(ctx, channel, metrics, energy_j)
        return aggregate, metrics, record

    def _all_truncated(self, ctx, channel, names) -> tuple[dict, dict, dict]:
        aggregate = {n: torch.zeros_like(ctx.global_adapter[n]) for n in names}
        metrics = {
            **_snr_metrics(channel.snr_db),
            **aggregation_error(aggregate, ctx.ideal_aggregate),
            "channel/participating": 0.0,
            "channel/truncated": float(len(channel.client_ids)),
            "channel/all_truncated": 1.0,
            "comm/channel_uses": 0.0,
            "comm/airtime_s": 0.0,
            "comm/energy_j": 0.0,
            "comm/side_info_values": 0.0,
        }
        energy = torch.zeros(len(channel.client_ids), dtype=torch.float64)
        return aggregate, metrics, _record(ctx, channel, metrics, energy)

    @override
    def round_snr_db(self, round_idx: int, plan: RoundPlan | None = None) -> Tensor | None:
        """``[K]`` SNRs (dB) of the latest round up to ``round_idx`` already transmitted.

        The channel is drawn at upload time, so before round ``t`` is sent this is round
        ``t - 1``'s; None before any round.
        """
        records = [r for r in self.history if r["round"] <= round_idx]
        if not records:
            return None
        return torch.tensor(max(records, key=lambda r: r["round"])["snr_db"], dtype=torch.float64)

    @override
    def reported_bandwidth_hz(self) -> float | None:
        return self.bandwidth_hz

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero and self.history:
            figure = channel_history_figure(self.history)
            log_figure(trainer, "channel/aircomp", figure, step=trainer.global_step)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "history": [dict(r) for r in self.history]}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.history = [dict(r) for r in state_dict["history"]]


def check_linear_aggregator(aggregator: object) -> None:
    """Over the air the channel computes a sum: only linear aggregators can run on it."""
    if not getattr(aggregator, "is_linear", False):
        raise ValueError(
            f"`aggregator` ({type(aggregator).__name__}) is not linear (`is_linear` is False); "
            "over-the-air aggregation computes sums, so use a linear aggregator (FedIT, "
            "FFALoRA, HeteroFL, FedSALoRA) or a digital link."
        )


def _snr_metrics(snr_db: Tensor) -> dict[str, float]:
    return {
        "channel/snr_db_mean": float(snr_db.mean()),
        "channel/snr_db_min": float(snr_db.min()),
        "channel/snr_db_max": float(snr_db.max()),
    }


def _record(ctx: RoundContext, channel, metrics: dict, energy_j: Tensor) -> dict[str, Any]:
    """History entry (builtins only: it is checkpointed and loaded with ``weights_only``)."""
    return {
        "round": int(ctx.round_idx),
        "clients": [int(c) for c in channel.client_ids],
        "snr_db": [float(s) for s in channel.snr_db.tolist()],  # full power, without the shift
        "energy_shift_db": float(channel.energy_shift_db),
        "participating": [bool(p) for p in channel.participating.tolist()],
        "energy_j": [float(e) for e in energy_j.tolist()],
        **{k: float(v) for k, v in metrics.items()},
    }


def _to_template(update: Mapping[str, Tensor], template: Mapping[str, Tensor]) -> dict:
    return {n: t.to(dtype=template[n].dtype, device=template[n].device) for n, t in update.items()}


def _check_type(name: str, value: object, cls: type) -> None:
    if not isinstance(value, cls):
        raise TypeError(
            f"`{name}` ({type(value).__name__}) must be a {cls.__name__} "
            f"(see lit_airlora.channel for the available classes)."
        )


def _check_streams(num_streams: int, fading: SmallScale) -> None:
    check_int_at_least("num_streams", num_streams, 1)
    limit = min(fading.num_rx, fading.num_tx)
    if num_streams > limit:
        raise ValueError(
            f"`num_streams` ({num_streams}) must be <= min(num_rx, num_tx) = {limit} of the "
            f"fading model ({type(fading).__name__}: num_rx={fading.num_rx}, "
            f"num_tx={fading.num_tx}); lower it or add antennas."
        )


def client_values(upload: Upload, names: list[str]) -> ClientValues:
    """An upload as the radio sees it: its tensors, the entries it sends, its ranks."""
    sent = {n: upload.sent_mask(n) for n in names}
    return ClientValues(upload.client_id, upload.tensors, sent, upload.ranks)


def mean_sums(
    uploads: list[Upload], means: dict[int, dict[str, Tensor]], aggregator, template: dict
) -> dict[str, Tensor]:
    """The aggregator's float64 partial sums of the senders' mean side information
    (``means``: :func:`~lit_airlora.channel.aircomp_round.side_means`)."""
    senders = [u.replace(tensors=means[u.client_id]) for u in uploads if u.client_id in means]
    sums = aggregator.partial_sums(senders, template)
    return {n: t.to(torch.float64) for n, t in sums.items()}
