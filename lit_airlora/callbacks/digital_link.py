"""DigitalUplink: each client's upload crosses its own digital link to the server."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
from typing_extensions import override

from lit_airlora.channel.costs import check_multiple_access, combined_airtime_s
from lit_airlora.channel.fading import AWGN, SmallScale
from lit_airlora.channel.large_scale import FixedSNR, LargeScale
from lit_airlora.channel.link import DigitalLink, LinkReport, received_value_mask
from lit_airlora.channel.payload import decode_upload, encode_upload, payload_bitstream
from lit_airlora.channel.quantize import Quantizer, UniformQuantizer, unpack_bits
from lit_airlora.channel.seeding import make_generator
from lit_airlora.federated.upload import RoundContext, Upload

#: Per-client counts summed over clients and DDP ranks, in this order.
_SUMMED = (
    "bits_offered",
    "bits_delivered",
    "block_transmissions",
    "block_errors",
    "blocks_dropped",
    "retransmissions",
    "energy_j",
    "channel_bit_errors",
    "channel_bits",
    "snr_db",
    "clients",
)
# Stream tags of a client's generators: CPU (large-scale draws) and device (everything else).
_CPU_STREAM, _DEVICE_STREAM = 0, 1


@dataclass
class _ClientResult:
    upload: Upload
    stats: dict[str, float]
    airtime_s: float


class DigitalUplink(L.Callback):
    """Digital uplink: quantise, send over a :class:`DigitalLink`, replace the uploads.

    At the ``on_upload_transmit`` stage, each client's upload is source coded (the entries it
    sends of every tensor the aggregator trains, by ``quantizer``), sent over ``link`` at the
    client's SNR (``large_scale``) through its fading block (``small_scale``), and replaced by
    what the server received: dequantised values, lost ones zero and removed from the upload's
    masks; ``meta["bits"]`` becomes the payload offered. Any aggregator runs after it. Each
    client's randomness comes from generators seeded by (round seed, client id, ``seed``), so a
    client's outcome does not depend on the DDP rank that simulates it. Logs ``comm/*`` (bits
    offered and delivered, block errors, retransmissions, airtime, energy) and ``channel/*``
    (BLER, raw BER for bit-level links, mean SNR) summed over ranks. Stateless: nothing to save.

    Args:
        link: The digital link (``BitLevelLink`` or ``AbstractionLink``).
        quantizer: Source coding of the values (default 8-bit ``UniformQuantizer``).
        large_scale: Per-client mean SNR (default ``FixedSNR(20.0)``).
        small_scale: Per-client fading block (default ``AWGN()``).
        multiple_access: ``"ofdma"`` / ``"fdma"`` (clients in parallel: round airtime is the
            max over clients) or ``"tdma"`` (one after another: the sum).
        seed: Seed of this link's randomness, mixed with the round seed and client id.
        name: Distinguishes the state of two instances (e.g. two links in one run).
    """

    def __init__(
        self,
        link: DigitalLink,
        quantizer: Quantizer | None = None,
        large_scale: LargeScale | None = None,
        small_scale: SmallScale | None = None,
        multiple_access: str = "ofdma",
        seed: int = 0,
        name: str = "uplink",
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

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(name=self.name)

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.link.setup(pl_module.device)
        self.small_scale.setup(pl_module.device)

    def on_upload_transmit(
        self, trainer: L.Trainer, pl_module: L.LightningModule, ctx: RoundContext
    ) -> None:
        """Replace ``ctx.uploads`` by the received uploads and log the link's metrics."""
        device = pl_module.device
        results = [self._transmit(u, ctx, device) for u in ctx.uploads]
        ctx.uploads = [r.upload for r in results]
        ctx.metrics.update(self._metrics(ctx, results))

    def _transmit(self, upload: Upload, ctx: RoundContext, device: torch.device) -> _ClientResult:
        keys = (ctx.generator_seed, upload.client_id, self.seed)
        cpu_gen = make_generator(*keys, _CPU_STREAM)
        gen = make_generator(*keys, _DEVICE_STREAM, device=device)
        names = [n for n in upload.tensors if ctx.aggregator.trainable(n)]
        encoded = encode_upload(upload, names, self.quantizer, gen)
        snr_db = self.large_scale.snr_db([upload.client_id], cpu_gen).to(torch.float64)
        fading = self.small_scale.draw(1, gen, device)
        payload = payload_bitstream(encoded) if self.link.corrupts_bits else encoded.payload_bits
        report = self.link.transmit([payload], snr_db, fading, gen)
        value_ok = received_value_mask(
            report.block_ok[0], report.block_bits[0], encoded.num_values, encoded.bits_per_value
        )
        codes = _received_codes(report, encoded.num_values, encoded.bits_per_value)
        received = decode_upload(upload, encoded, self.quantizer, value_ok, codes)
        stats = _client_stats(report, float(snr_db[0]))
        received.meta.update(
            bits=float(encoded.payload_bits),
            snr_db=stats["snr_db"],
            airtime_s=float(report.airtime_s[0]),
            energy_j=stats["energy_j"],
        )
        return _ClientResult(received, stats, float(report.airtime_s[0]))

    def _metrics(self, ctx: RoundContext, results: list[_ClientResult]) -> dict[str, float]:
        """Round metrics over all clients of all ranks (sums through ``ctx.reduce``)."""
        clients = ctx.round_clients or [u.client_id for u in ctx.uploads]
        position = {c: i for i, c in enumerate(clients)}
        airtime = torch.zeros(len(clients), dtype=torch.float64)
        for upload, result in zip(ctx.uploads, results, strict=True):
            airtime[position[upload.client_id]] = result.airtime_s
        local = torch.tensor(
            [sum(r.stats[k] for r in results) for k in _SUMMED], dtype=torch.float64
        )
        reduced = ctx.reduce({"sums": local, "airtime_s": airtime})
        total = dict(zip(_SUMMED, reduced["sums"].tolist(), strict=True))
        return _round_metrics(total, reduced["airtime_s"], self.multiple_access, self.link)


def _received_codes(report: LinkReport, num_values: int, bits_per_value: int):
    """Codes as received, from the link's bits, or ``None`` when received blocks are exact."""
    bits = report.received_bits[0]
    if bits is None:
        return None
    return unpack_bits(bits[: num_values * bits_per_value], bits_per_value)


def _client_stats(report: LinkReport, snr_db: float) -> dict[str, float]:
    values = {
        "bits_offered": report.bits_offered,
        "bits_delivered": report.bits_delivered,
        "block_transmissions": report.block_transmissions,
        "block_errors": report.block_errors,
        "blocks_dropped": report.blocks_dropped(),
        "retransmissions": report.retransmissions,
        "energy_j": report.energy_j,
        "channel_bit_errors": report.channel_bit_errors,
        "channel_bits": report.channel_bits,
    }
    stats = {k: float(v[0]) for k, v in values.items()}
    return {**stats, "snr_db": snr_db, "clients": 1.0}


def _round_metrics(
    total: dict[str, float], airtime_s: torch.Tensor, multiple_access: str, link: DigitalLink
) -> dict[str, float]:
    clients = max(total["clients"], 1.0)
    metrics = {
        "comm/bits_offered": total["bits_offered"],
        "comm/bits_delivered": total["bits_delivered"],
        "comm/delivered_fraction": total["bits_delivered"] / max(total["bits_offered"], 1.0),
        "comm/block_errors": total["block_errors"],
        "comm/blocks_dropped": total["blocks_dropped"],
        "comm/retransmissions": total["retransmissions"],
        "comm/airtime_s": combined_airtime_s(airtime_s, multiple_access),
        "comm/energy_j": total["energy_j"],
        "channel/bler": total["block_errors"] / max(total["block_transmissions"], 1.0),
        "channel/snr_db_mean": total["snr_db"] / clients,
    }
    if link.corrupts_bits:
        metrics["channel/ber"] = total["channel_bit_errors"] / max(total["channel_bits"], 1.0)
    return metrics


def _check_instance(name: str, value: object, cls: type) -> None:
    if not isinstance(value, cls):
        raise TypeError(
            f"`{name}` ({type(value).__name__}) must be a {cls.__name__} (a subclass chosen in "
            "YAML by `class_path`)."
        )
