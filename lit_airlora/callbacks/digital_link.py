"""DigitalUplink: each client's upload crosses its own digital link to the server."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import lightning as L
import torch
from torch import Tensor
from typing_extensions import override

from lit_airlora.callbacks.remote_link import RemoteLinkMixin
from lit_airlora.channel.costs import check_multiple_access
from lit_airlora.channel.fading import AWGN, SmallScale
from lit_airlora.channel.large_scale import FixedSNR, LargeScale
from lit_airlora.channel.link import DigitalLink, LinkReport, received_value_mask
from lit_airlora.channel.link_metrics import LINK_COUNTS, client_counts, round_link_metrics
from lit_airlora.channel.payload import (
    EncodedPayload,
    EntryIndex,
    decode_values,
    encode_values,
    payload_bitstream,
)
from lit_airlora.channel.quantize import Quantizer, UniformQuantizer, unpack_bits
from lit_airlora.federated.plan import RoundPlan
from lit_airlora.federated.upload import RoundContext, Upload
from lit_airlora.policy.channel_state import SNRReporter
from lit_airlora.rank_blocks import active_index
from lit_airlora.seeding import make_generator

log = logging.getLogger(__name__)

# Stream tags of a client's generators: CPU (large-scale draws) and device (everything else).
_CPU_STREAM, _DEVICE_STREAM = 0, 1
#: Rounds whose (seed, clients) are remembered for ``round_snr_db`` (this and the previous).
_REMEMBERED_ROUNDS = 2


@dataclass
class _Sent:
    """One client's side of the round: its payload, channel and generator."""

    upload: Upload
    encoded: EncodedPayload
    snr_db: Tensor
    fading: Tensor
    generator: torch.Generator


@dataclass
class _ClientResult:
    upload: Upload
    stats: dict[str, float]
    airtime_s: float


class DigitalUplink(RemoteLinkMixin, SNRReporter):
    """Digital uplink: quantise, send over a :class:`DigitalLink`, replace the uploads.

    At the ``on_upload_transmit`` stage, each client's upload is source coded (the entries it
    sends of every tensor the aggregator trains, by ``quantizer``), sent over ``link`` at the
    client's SNR (``large_scale``) through its fading block (``small_scale``), and replaced by
    what the server received: dequantised values, lost ones zero and removed from the upload's
    masks. ``meta["bits"]`` becomes the payload offered: quantised values, the quantiser's side
    information and a sparsifying encoder's index (``meta["index_bits"]``), all of which cost
    airtime. When a controller allocated FDMA bandwidth shares (TSFA sets
    ``meta["bandwidth_share"]`` at the encode stage), the link sends each client on its share. Any
    aggregator runs after it. Each client's randomness comes from generators
    seeded by (round seed, client id, ``seed``), so a client's outcome does not depend on the
    DDP rank that simulates it, and its mean SNR is known as soon as the round's plan is
    (:meth:`round_snr_db`, read by rank policies). Logs ``comm/*`` (bits offered and delivered,
    block errors, retransmissions, airtime, energy) and ``channel/*`` (BLER, raw BER for
    bit-level links, mean SNR) summed over ranks. Stateless: nothing to save.

    In a LightningModule other than ours holding a peft LoRA model (remote fine-tuning), the
    adapter crosses the link once per training epoch (one client, id 0) and the received
    adapter replaces the trained one or shadows it (``remote_mode``).

    The stage leaves the process's thread count alone: quantisation, decoding and Sionna's link
    abstraction are many small tensor ops, which on a shared CPU run faster on one intra-op
    thread (measured 17x for the abstraction link, 3x for the bit-level link, on 2 cores); set
    ``torch.set_num_threads`` in your script if the link dominates your run.

    Args:
        link: The digital link (``BitLevelLink`` or ``AbstractionLink``).
        quantizer: Source coding of the values (default 8-bit ``UniformQuantizer``).
        large_scale: Per-client mean SNR (default ``FixedSNR(20.0)``).
        small_scale: Per-client fading block (default ``AWGN()``).
        multiple_access: ``"ofdma"`` / ``"fdma"`` (clients in parallel: round airtime is the
            max over clients) or ``"tdma"`` (one after another: the sum).
        seed: Seed of this link's randomness, mixed with the round seed and client id.
        name: Distinguishes the state of two instances (e.g. two links in one run).
        remote_mode: In a LightningModule other than ours, whether the received adapter
            replaces the trained one (``"replace"``) or is kept beside it and validated
            (``"shadow"``).
    """

    stage = "transmit"

    def __init__(
        self,
        link: DigitalLink,
        quantizer: Quantizer | None = None,
        large_scale: LargeScale | None = None,
        small_scale: SmallScale | None = None,
        multiple_access: str = "ofdma",
        seed: int = 0,
        name: str = "uplink",
        remote_mode: str = "replace",
    ) -> None:
        quantizer = UniformQuantizer(8) if quantizer is None else quantizer
        large_scale = FixedSNR(20.0) if large_scale is None else large_scale
        small_scale = AWGN() if small_scale is None else small_scale
        _check_instance("link", link, DigitalLink)
        _check_instance("quantizer", quantizer, Quantizer)
        _check_instance("large_scale", large_scale, LargeScale)
        _check_instance("small_scale", small_scale, SmallScale)
        check_multiple_access(multiple_access)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"`seed` ({seed!r}) must be an int.")
        self.link, self.quantizer = link, quantizer
        self.large_scale, self.small_scale = large_scale, small_scale
        self.multiple_access, self.seed, self.name = multiple_access, seed, name
        self.remote_mode = remote_mode
        self._check_remote()
        self._seen: dict[int, tuple[int, list[int]]] = {}

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(name=self.name)

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self.link.setup(pl_module.device)
        self.small_scale.setup(pl_module.device)

    @override
    def on_upload_transmit(
        self, trainer: L.Trainer, pl_module: L.LightningModule, ctx: RoundContext
    ) -> None:
        """Replace ``ctx.uploads`` by the received uploads and log the link's metrics."""
        self._remember(ctx)
        device = pl_module.device
        sent = [self._encode(u, ctx, device) for u in ctx.uploads]
        report = self._send(sent)
        results = [self._receive(s, report, k) for k, s in enumerate(sent)]
        ctx.metrics.update(self._metrics(ctx, results))
        outage = _outage(report, len(results))
        ctx.uploads = [r.upload for r, out in zip(results, outage, strict=True) if not out]
        ctx.metrics["channel/outage_clients"] = self._log_outage(ctx, results, outage, report)

    def _log_outage(self, ctx, results, outage: list[bool], report) -> float:
        """Name the clients the link silenced and why; their count over all DDP ranks."""
        silenced = [
            (r.upload.client_id, k)
            for k, (r, out) in enumerate(zip(results, outage, strict=True))
            if out
        ]
        if silenced:
            sinr = report.extras.get("sinr_eff_db")
            detail = ", ".join(
                f"client {c} (effective SINR {float(sinr[k]):.1f} dB)"
                if sinr is not None
                else f"client {c}"
                for c, k in silenced
            )
            log.info(
                "Round %d: %s below the lowest MCS at the %.0f%% BLER target: upload dropped "
                "(outage).",
                ctx.round_idx,
                detail,
                100 * self.link.target_bler,
            )
        count = torch.tensor([float(len(silenced))], dtype=torch.float64)
        return float(ctx.reduce({"outage": count})["outage"][0])

    @override
    def round_snr_db(self, round_idx: int, plan: RoundPlan | None = None) -> Tensor | None:
        """``[K]`` float64 mean SNR (dB) of round ``round_idx``'s clients (sorted ids).

        The SNRs the link uses (or will use) that round: known once the round has been
        transmitted, or earlier from the round's ``plan`` (its seed and clients); otherwise None
        (rank policies then use an earlier round).
        """
        keys = self._seen.get(round_idx)
        if keys is None and plan is not None and plan.round_idx == round_idx:
            keys = (plan.seed, sorted(plan.clients))
        if keys is None:
            return None
        generator_seed, clients = keys
        if not clients:
            return torch.zeros(0, dtype=torch.float64)
        return torch.cat([self._client_snr_db(generator_seed, c) for c in clients])

    def _client_snr_db(self, generator_seed: int, client_id: int) -> Tensor:
        """``[1]`` float64 mean SNR of one client in the round seeded by ``generator_seed``."""
        generator = make_generator(generator_seed, client_id, self.seed, _CPU_STREAM)
        return self.large_scale.snr_db([client_id], generator).to(torch.float64)

    def _remember(self, ctx: RoundContext) -> None:
        """Keep the round's keys (this and the previous round)."""
        clients = sorted(ctx.round_clients or [u.client_id for u in ctx.uploads])
        self._seen[ctx.round_idx] = (int(ctx.generator_seed), clients)
        for old in sorted(self._seen)[:-_REMEMBERED_ROUNDS]:
            del self._seen[old]

    def _encode(self, upload: Upload, ctx: RoundContext, device: torch.device) -> _Sent:
        """Quantise one upload and draw its channel (its generators, in a fixed order)."""
        keys = (ctx.generator_seed, upload.client_id, self.seed, _DEVICE_STREAM)
        gen = make_generator(*keys, device=device)
        names = [n for n in upload.tensors if ctx.aggregator.trainable(n)]
        encoded = encode_upload(upload, names, self.quantizer, gen)
        snr_db = self._client_snr_db(ctx.generator_seed, upload.client_id)
        fading = self.small_scale.draw(1, gen, device)
        return _Sent(upload, encoded, snr_db, fading, gen)

    def _send(self, sent: list[_Sent]) -> LinkReport | None:
        """All of this rank's clients through the link in one call (one generator each)."""
        if not sent:
            return None
        payloads = [
            payload_bitstream(s.encoded) if self.link.corrupts_bits else s.encoded.payload_bits
            for s in sent
        ]
        snr_db = torch.cat([s.snr_db for s in sent])
        fading = torch.cat([s.fading for s in sent])
        shares = _bandwidth_shares(sent)
        generators = [s.generator for s in sent]
        return self.link.transmit(payloads, snr_db, fading, generators, bandwidth_shares=shares)

    def _receive(self, sent: _Sent, report: LinkReport, k: int) -> _ClientResult:
        """Client ``k``'s upload as the server received it, with its statistics."""
        encoded = sent.encoded
        value_ok = received_value_mask(
            report.block_ok[k], report.block_bits[k], encoded.num_values, encoded.bits_per_value
        )
        codes = _received_codes(report, k, encoded.num_values, encoded.bits_per_value)
        received = decode_upload(sent.upload, encoded, self.quantizer, value_ok, codes)
        stats = client_counts(report, k, float(sent.snr_db[0]))
        airtime_s = float(report.airtime_s[k])
        received.meta.update(
            bits=float(encoded.payload_bits),
            snr_db=stats["snr_db"],
            airtime_s=airtime_s,
            energy_j=stats["energy_j"],
        )
        if "bandwidth_share" in report.extras:  # the share the link actually used
            received.meta["bandwidth_share"] = float(report.extras["bandwidth_share"][k])
        return _ClientResult(received, stats, airtime_s)

    def _metrics(self, ctx: RoundContext, results: list[_ClientResult]) -> dict[str, float]:
        """Round metrics over all clients of all ranks (sums through ``ctx.reduce``)."""
        clients = ctx.round_clients or [u.client_id for u in ctx.uploads]
        position = {c: i for i, c in enumerate(clients)}
        airtime = torch.zeros(len(clients), dtype=torch.float64)
        for upload, result in zip(ctx.uploads, results, strict=True):
            airtime[position[upload.client_id]] = result.airtime_s
        local = torch.tensor(
            [sum(r.stats[k] for r in results) for k in LINK_COUNTS], dtype=torch.float64
        )
        reduced = ctx.reduce({"sums": local, "airtime_s": airtime})
        total = dict(zip(LINK_COUNTS, reduced["sums"].tolist(), strict=True))
        return round_link_metrics(
            total, reduced["airtime_s"], self.multiple_access, self.link.corrupts_bits
        )


def _bandwidth_shares(sent: list[_Sent]) -> Tensor | None:
    """FDMA shares a controller set on the uploads (``meta["bandwidth_share"]``, TSFA's)."""
    shares = [s.upload.meta.get("bandwidth_share") for s in sent]
    if all(share is None for share in shares):
        return None
    if any(share is None for share in shares):
        raise ValueError(
            "Some uploads carry `meta['bandwidth_share']` and others not: a bandwidth "
            "controller (TSFA) must allocate every client it schedules."
        )
    return torch.tensor(shares, dtype=torch.float64)


def _outage(report: LinkReport | None, num_clients: int) -> list[bool]:
    """Per client, whether the link silenced it (``extras["outage"]``; none if not reported)."""
    if report is None or "outage" not in report.extras:
        return [False] * num_clients
    return [bool(x) for x in report.extras["outage"].tolist()]


def _received_codes(report: LinkReport, k: int, num_values: int, bits_per_value: int):
    """Client ``k``'s codes as received, or ``None`` when received blocks are exact."""
    bits = report.received_bits[k]
    if bits is None:
        return None
    return unpack_bits(bits[: num_values * bits_per_value], bits_per_value)


def _check_instance(name: str, value: object, cls: type) -> None:
    if not isinstance(value, cls):
        raise TypeError(
            f"`{name}` ({type(value).__name__}) must be a {cls.__name__} (a subclass chosen in "
            "YAML by `class_path`)."
        )


# -- uploads <-> the radio's payloads (the channel package takes tensors, not uploads) ---------
def encode_upload(
    upload: Upload, names: list[str], quantizer: Quantizer, generator: torch.Generator
) -> EncodedPayload:
    """The payload of ``upload``: its sent entries of ``names`` and its sparsity index."""
    indices = [sent_index(upload, n) for n in names]
    index_bits = int(upload.meta.get("index_bits", 0))  # declared by a sparsifying encoder
    return encode_values(upload.tensors, indices, names, quantizer, generator, index_bits)


def decode_upload(
    upload: Upload,
    encoded: EncodedPayload,
    quantizer: Quantizer,
    value_ok: Tensor,
    received_codes: Tensor | None = None,
) -> Upload:
    """The upload as the server received it (a new value; ``upload`` is not modified)."""
    tensors, masks = decode_values(
        upload.tensors, upload.masks, encoded, quantizer, value_ok, received_codes
    )
    return upload.replace(tensors=tensors, masks=masks)


def sent_index(upload: Upload, name: str) -> EntryIndex:
    """Where ``upload`` sends entries of ``name``: its mask, or the active-rank block's slices.

    Same entries, in the same (row-major) order, as ``tensor[upload.sent_mask(name)]``.
    """
    if name in upload.masks:
        return upload.masks[name]
    return active_index(name, upload.ranks)
