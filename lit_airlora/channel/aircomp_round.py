"""One round of over-the-air aggregation, as steps between which DDP ranks sum their parts.

1. :func:`draw_channel`: every rank draws every client's channel from generators seeded by
   ``(round seed, callback seed, client id)``, and the same truncation decisions.
2. :func:`side_information`: each rank fills its clients' rows of the side information (mean and
   standard deviation per tensor, ranks); a sum over ranks gives everyone every row.
3. :func:`make_plan`: beamformers, power scaling and precoders, identical on every rank.
4. :func:`local_transmission`: each rank superposes its clients' pre-scaled signals through their
   channels; a sum over ranks is the superposition. :func:`side_means`: the error-free mean side
   information, which the caller sums with its aggregator in the same all-reduce.
5. :func:`receive`: one receiver-noise draw (identical on every rank), the receive beamformer,
   de-normalisation; the aggregator's ``finalize`` turns the sums into the aggregate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lit_airlora.channel.aircomp import (
    AirCompPlan,
    estimate,
    min_stream_gain,
    receiver_noise,
    siso_plan,
    superpose,
    transmit_energy,
    truncation_mask,
)
from lit_airlora.channel.beamforming import Beamformer
from lit_airlora.channel.fading import SmallScale
from lit_airlora.channel.large_scale import LargeScale
from lit_airlora.channel.mimo import mimo_plan
from lit_airlora.channel.normalise import (
    ClientValues,
    block_layout,
    client_stats,
    common_scale,
    from_symbols,
    max_ranks,
    mean_tensors,
    num_ofdm_symbols,
    pack,
    payload_size,
    to_symbols,
    unpack,
)
from lit_airlora.channel.units import db_to_amplitude
from lit_airlora.seeding import make_generator

#: Keys mixed into the callback's seeds, one per independent random stream.
SNR_STREAM, FADING_STREAM, NOISE_STREAM, BEAM_STREAM = 1, 2, 3, 4
Y_KEY, ENERGY_KEY, STATS_KEY, RANKS_KEY = "air/y", "air/energy", "air/stats", "air/ranks"


@dataclass
class RoundChannel:
    """The round's channels and participation, identical on every rank.

    Attributes:
        client_ids: The round's clients (sorted).
        weights: ``[K]`` float64 aggregation weights divided by their sum over the round.
        snr_db: ``[K]`` average SNR in dB at full power per symbol (what the large-scale model
            drew; what a policy reads back as the client's SNR).
        fading: ``[K, M, N_r, N_t]`` small-scale channels, complex128.
        participating: ``[K]`` bool, after truncation.
        energy_shift_db: Energy per value against full power per symbol (an energy budget,
            :mod:`lit_airlora.channel.energy_budget`), applied on top of ``snr_db``.
    """

    client_ids: list[int]
    weights: Tensor
    snr_db: Tensor
    fading: Tensor
    participating: Tensor
    energy_shift_db: float = 0.0

    @property
    def effective(self) -> Tensor:
        """``sqrt(snr_k s) G_k``: channels with unit transmit power and unit noise."""
        snr_db = self.snr_db + self.energy_shift_db
        amplitude = db_to_amplitude(snr_db).to(self.fading.device)
        return amplitude[:, None, None, None] * self.fading

    def index_of(self) -> dict[int, int]:
        return {c: i for i, c in enumerate(self.client_ids)}


def draw_channel(
    large_scale: LargeScale,
    fading: SmallScale,
    client_ids: Sequence[int],
    client_weights: Mapping[int, float],
    truncation_threshold: float,
    num_streams: int,
    keys: tuple[int, ...],
    device: torch.device | str,
) -> RoundChannel:
    """Step 1: every client's SNR and fading, and who is truncated."""
    ids = list(client_ids)
    weights = torch.tensor([client_weights[c] for c in ids], dtype=torch.float64, device=device)
    weights = weights / weights.sum().clamp_min(torch.finfo(torch.float64).tiny)
    snr_db = large_scale.snr_db(ids, make_generator(*keys, SNR_STREAM)).to(device)
    g = fading.draw_clients(ids, (*keys, FADING_STREAM), device)  # (K, N_r, N_t, M)
    g = g.permute(0, 3, 1, 2).to(torch.complex128)  # (K, M, N_r, N_t)
    gain = min_stream_gain(g, num_streams)
    participating = truncation_mask(gain, truncation_threshold, weights) & torch.isfinite(snr_db)
    return RoundChannel(ids, weights, snr_db, g, participating)


def side_information(
    clients: Sequence[ClientValues],
    channel: RoundChannel,
    names: Sequence[str],
    modules: Sequence[str],
) -> dict[str, Tensor]:
    """Step 2: this rank's rows of ``[K, T, 2]`` statistics and ``[K, num_modules]`` ranks."""
    index = channel.index_of()
    device = channel.fading.device
    stats = torch.zeros((len(index), len(names), 2), dtype=torch.float64, device=device)
    ranks = torch.zeros((len(index), len(modules)), dtype=torch.float64, device=device)
    for client in clients:
        i = index[client.client_id]
        stats[i] = client_stats(client, names).to(device)
        ranks[i] = torch.tensor([float(client.ranks[m]) for m in modules], dtype=torch.float64)
    return {STATS_KEY: stats, RANKS_KEY: ranks}


def make_plan(
    channel: RoundChannel, num_streams: int, beamformer: Beamformer, keys: tuple[int, ...]
) -> AirCompPlan:
    """Step 3: single-antenna channel inversion, or beamformers + zero-forcing precoders."""
    h, w, p = channel.effective, channel.weights, channel.participating
    if h.shape[-2:] == (1, 1) and num_streams == 1:
        return siso_plan(h, w, p)
    generator = make_generator(*keys, BEAM_STREAM, device=h.device)
    combiner = beamformer(h[p], w[p] ** 2, num_streams, generator)
    return mimo_plan(h, w, p, combiner)


@dataclass
class Payload:
    """How values map to the air: tensor names, their layout, and the common scales.

    Attributes:
        names: Tensors on the air (the aggregator's trainable ones), in order.
        layout: Rank of the block sent per tensor (the largest participating rank).
        stats: ``[K, T, 2]`` every client's mean and standard deviation per tensor.
        scale: ``[T]`` common scale per tensor (largest participating standard deviation).
        template: Tensor shapes (the global adapter).
    """

    names: list[str]
    layout: dict[str, int]
    stats: Tensor
    scale: Tensor
    template: Mapping[str, Tensor]

    @property
    def num_values(self) -> int:
        return payload_size(self.template, self.layout)


def make_payload(
    side: Mapping[str, Tensor],
    participating: Tensor,
    names: Sequence[str],
    modules: Sequence[str],
    template: Mapping[str, Tensor],
) -> Payload:
    """The round's payload description from the all-reduced side information."""
    stats = side[STATS_KEY]
    ranks = max_ranks(side[RANKS_KEY].cpu(), participating.cpu(), modules)
    layout = block_layout(names, ranks)
    return Payload(list(names), layout, stats, common_scale(stats, participating), template)


def senders(
    plan: AirCompPlan, channel: RoundChannel, clients: Sequence[ClientValues]
) -> list[ClientValues]:
    """This rank's clients that transmit (not truncated)."""
    index = channel.index_of()
    return [c for c in clients if bool(plan.participating[index[c.client_id]])]


def local_transmission(
    plan: AirCompPlan, channel: RoundChannel, clients: Sequence[ClientValues], payload: Payload
) -> dict[str, Tensor]:
    """Step 4: this rank's part of the superposition ``[T, M, N_r, 2]`` and the energy ``[K]``
    of every client, float64 (every rank must all-reduce the same dtypes)."""
    index = channel.index_of()
    num_subcarriers, num_rx, num_streams = plan.combiner.shape
    num_symbols = num_ofdm_symbols(payload.num_values, num_subcarriers, num_streams)
    device = plan.channels.device
    y = torch.zeros((num_symbols, num_subcarriers, num_rx), dtype=torch.complex128, device=device)
    energy = torch.zeros(len(index), dtype=torch.float64, device=device)
    for client in senders(plan, channel, clients):  # one at a time: memory stays at one payload
        k = torch.tensor([index[client.client_id]])
        z = pack(client, payload.names, payload.layout, payload.stats[k[0]], payload.scale)
        symbols = to_symbols(z.to(device), num_subcarriers, num_streams)[None]
        y += superpose(plan, k, symbols)
        energy[k] = transmit_energy(plan, k, symbols)
    return {Y_KEY: torch.view_as_real(y).to(torch.float64), ENERGY_KEY: energy}


def side_means(
    plan: AirCompPlan, channel: RoundChannel, clients: Sequence[ClientValues], payload: Payload
) -> dict[int, dict[str, Tensor]]:
    """Per transmitting client of this rank, its mean side information ``mu_kt`` on its sent
    entries (the server adds back their weighted sum, sent error-free)."""
    index = channel.index_of()
    return {
        c.client_id: mean_tensors(c, payload.names, payload.stats[index[c.client_id]])
        for c in senders(plan, channel, clients)
    }


def receive(
    plan: AirCompPlan,
    reduced: Mapping[str, Tensor],
    payload: Payload,
    noise_generator: torch.Generator | None,
) -> dict[str, Tensor]:
    """Step 5: server's sums: estimated ``sum_k w_k x_k`` per tensor, plus the exact side sums.

    ``noise_generator=None`` means a noiseless receiver (infinite SNR). The estimate is in units
    of the round-normalised weights; it is rescaled by the side-information total weight later.
    """
    y = torch.view_as_complex(reduced[Y_KEY].contiguous())  # (T, M, N_r)
    if noise_generator is not None:
        y = y + receiver_noise(tuple(y.shape), noise_generator).to(y.device)
    z_hat = from_symbols(estimate(plan, y), payload.num_values)
    return unpack(z_hat, payload.names, payload.layout, payload.scale, payload.template)


def server_sums(
    reduced: Mapping[str, Tensor], estimate_sums: Mapping[str, Tensor], total_weight: float
) -> dict[str, Tensor]:
    """The aggregator's sums: exact mean side information plus the over-the-air estimate.

    ``estimate_sums`` are in units of the round-normalised weights, hence ``total_weight``.
    """
    sums = {k: v for k, v in reduced.items() if not k.startswith("air/")}
    for name, value in estimate_sums.items():
        sums[name] = sums[name] + total_weight * value.to(sums[name].device)
    return sums
