"""Bit-level digital link: the payload's bits really cross a simulated 5G-style PHY.

Per block: CRC (3GPP TS 38.212 polynomials) -> 5G LDPC encoding with rate matching -> Gray QAM
mapping -> fading and AWGN -> LMMSE equalisation -> soft demapping -> belief-propagation LDPC
decoding -> CRC check, all with Sionna 2.x blocks. The block failing its CRC is retransmitted
(fresh noise, same fading block; no soft combining [assumed]) up to ``max_retransmissions``
times and then dropped; a block with undetected errors is delivered with its errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lit_airlora.channel.checks import check_int_at_least, check_positive
from lit_airlora.channel.costs import energy_j, symbol_airtime_s
from lit_airlora.channel.equalization import lmmse_equalize
from lit_airlora.channel.link import (
    DigitalLink,
    LinkReport,
    check_link_inputs,
    client_generators,
    delivered_bits,
    noise_variance,
)
from lit_airlora.channel.seeding import sionna_device

#: CRC polynomials of TS 38.212 known to Sionna and their lengths in bits.
CRC_LENGTHS = {"CRC24A": 24, "CRC24B": 24, "CRC24C": 24, "CRC16": 16, "CRC11": 11, "CRC6": 6}
QAM_BITS_PER_SYMBOL = (2, 4, 6, 8)
DEMAPPING_METHODS = ("app", "maxlog")
#: Largest information block of the 5G LDPC code (base graph 1).
LDPC_MAX_INFO_BITS = 8448


class BitLevelLink(DigitalLink):
    """5G LDPC + CRC + QAM over fading and AWGN, simulated bit by bit (Sionna 2.x).

    A block carries ``round(code_rate * block_length) - crc_length`` payload bits and
    ``block_length`` coded bits (``block_length / num_bits_per_symbol`` QAM symbols). Symbols fill
    the client's streams (transmit antennas) first, then its subcarriers, then successive channel
    uses; the receiver equalises each subcarrier with LMMSE (zero forcing for one antenna; see
    :mod:`lit_airlora.channel.equalization`) and demaps with the per-symbol residual noise.
    Airtime counts one channel use (all subcarriers) as ``num_subcarriers / bandwidth_hz``
    seconds, i.e. ``bandwidth_hz`` resource elements per second. The CPU LDPC decoder manages
    roughly 0.1 Mbit/s, so payloads above ``max_payload_bits`` are refused: use
    :class:`~lit_airlora.channel.abstraction.AbstractionLink` at model scale.

    Args:
        num_bits_per_symbol: QAM order in bits (2 = QPSK, 4 = 16-QAM, 6, 8).
        code_rate: LDPC code rate (information bits incl. CRC / coded bits), in (0, 1).
        block_length: Coded bits per block ``n`` (a multiple of ``num_bits_per_symbol``).
        max_retransmissions: Retransmissions of a block failing its CRC before it is dropped.
        crc_degree: CRC polynomial, one of :data:`CRC_LENGTHS`.
        num_bp_iterations: Belief-propagation iterations of the LDPC decoder.
        demapping_method: ``"app"`` (exact) or ``"maxlog"`` soft demapping.
        bandwidth_hz: Bandwidth of the client's allocation in Hz (sets the airtime).
        tx_power_w: Client transmit power in watts (sets the energy).
        max_payload_bits: Largest payload per client accepted, in bits.
    """

    corrupts_bits = True

    def __init__(
        self,
        num_bits_per_symbol: int = 2,
        code_rate: float = 0.5,
        block_length: int = 1024,
        max_retransmissions: int = 0,
        crc_degree: str = "CRC16",
        num_bp_iterations: int = 20,
        demapping_method: str = "app",
        bandwidth_hz: float = 1e6,
        tx_power_w: float = 0.2,
        max_payload_bits: int = 200_000,
    ) -> None:
        _check_choice("num_bits_per_symbol", num_bits_per_symbol, QAM_BITS_PER_SYMBOL)
        _check_choice("crc_degree", crc_degree, tuple(CRC_LENGTHS))
        _check_choice("demapping_method", demapping_method, DEMAPPING_METHODS)
        check_int_at_least("max_retransmissions", max_retransmissions, 0)
        check_int_at_least("num_bp_iterations", num_bp_iterations, 1)
        check_int_at_least("max_payload_bits", max_payload_bits, 1)
        check_positive("bandwidth_hz", bandwidth_hz)
        check_positive("tx_power_w", tx_power_w)
        _check_code(code_rate, block_length, num_bits_per_symbol, CRC_LENGTHS[crc_degree])
        self.num_bits_per_symbol, self.code_rate = num_bits_per_symbol, float(code_rate)
        self.block_length, self.max_retransmissions = block_length, max_retransmissions
        self.crc_degree, self.num_bp_iterations = crc_degree, num_bp_iterations
        self.demapping_method, self.bandwidth_hz = demapping_method, float(bandwidth_hz)
        self.tx_power_w, self.max_payload_bits = float(tx_power_w), max_payload_bits
        self.ldpc_info_bits = round(code_rate * block_length)
        #: Payload bits per block (LDPC information bits minus the CRC).
        self.block_bits = self.ldpc_info_bits - CRC_LENGTHS[crc_degree]
        self._device: str | None = None

    def setup(self, device: torch.device | str) -> None:
        key = sionna_device(device)
        if key == self._device:
            return
        from sionna.phy.fec.crc import CRCDecoder, CRCEncoder
        from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
        from sionna.phy.mapping import Demapper, Mapper

        m = self.num_bits_per_symbol
        self._crc_encoder = CRCEncoder(self.crc_degree, k=self.block_bits, device=key)
        self._crc_decoder = CRCDecoder(self._crc_encoder, device=key)
        self._encoder = LDPC5GEncoder(
            self.ldpc_info_bits, self.block_length, num_bits_per_symbol=m, device=key
        )
        self._decoder = LDPC5GDecoder(
            self._encoder, hard_out=True, num_iter=self.num_bp_iterations, device=key
        )
        self._mapper = Mapper("qam", m, device=key)
        self._demapper = Demapper(self.demapping_method, "qam", m, device=key)
        self._device = key

    def transmit(
        self,
        payloads: Sequence[Tensor | int],
        snr_db: Tensor,
        fading: Tensor,
        generator: torch.Generator | Sequence[torch.Generator],
        bandwidth_shares: Tensor | None = None,
    ) -> LinkReport:
        if bandwidth_shares is not None:
            raise ValueError(
                "BitLevelLink does not model FDMA `bandwidth_shares` (TSFA's): use "
                "AbstractionLink for a controlled FDMA uplink."
            )
        check_link_inputs(payloads, snr_db, fading)
        generators = client_generators(generator, len(payloads))
        if self._device is None:
            self.setup(fading.device)
        no = noise_variance(snr_db)
        results = [
            self._transmit_one(bits, float(no[k]), fading[k], generators[k])
            for k, bits in enumerate(payloads)
        ]
        return _report(results, self.block_bits, self.bandwidth_hz, self.tx_power_w)

    def _transmit_one(
        self, bits: Tensor | int, no: float, h: Tensor, generator: torch.Generator
    ) -> dict:
        """Blocks of one client through the chain, failed ones again up to the limit."""
        bits = self._check_payload(bits)
        blocks = self._to_blocks(bits)  # (B, block_bits)
        received, ok = blocks.clone(), torch.zeros(len(blocks), dtype=torch.bool)
        pending = torch.arange(len(blocks))
        stats = dict.fromkeys(("tx", "errors", "uses", "chan_err", "chan_bits"), 0)
        for _ in range(1 + self.max_retransmissions):
            if pending.numel() == 0:
                break
            info, crc_ok, chan_err, uses = self._send(blocks[pending], h, no, generator)
            received[pending], ok[pending] = info, crc_ok.cpu()
            stats["tx"] += len(pending)
            stats["errors"] += int((~crc_ok).sum())
            stats["uses"] += uses
            stats["chan_err"] += chan_err
            stats["chan_bits"] += len(pending) * self.block_length
            pending = pending[~crc_ok.cpu()]
        rx_bits = received.reshape(-1)[: bits.numel()].to(torch.uint8)
        return {**stats, "ok": ok, "rx": rx_bits, "offered": bits.numel()}

    def _send(
        self, blocks: Tensor, h: Tensor, no: float, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, int, int]:
        """One transmission of ``blocks``: decoded payload, CRC flags, channel errors, uses."""
        codewords = self._encoder(self._crc_encoder(blocks))  # (B, n)
        x = self._mapper(codewords)  # (B, n / m)
        x_hat, no_eff, uses = self._channel(x, h, no, generator)
        llr = self._demapper(x_hat, no_eff)  # (B, n); LLR = log P(b=1) / P(b=0)
        chan_err = int(((llr > 0) != (codewords > 0.5)).sum())
        info, crc_ok = self._crc_decoder(self._decoder(llr))
        return info, crc_ok[..., 0], chan_err, uses

    def _channel(
        self, x: Tensor, h: Tensor, no: float, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, int]:
        """Symbols through ``y = H x + n`` and LMMSE; returns estimates, noise, channel uses."""
        num_tx, num_sc = h.shape[1], h.shape[2]
        flat = x.reshape(-1)
        uses = math.ceil(flat.numel() / (num_tx * num_sc))
        padded = torch.zeros(uses * num_sc * num_tx, dtype=flat.dtype, device=flat.device)
        padded[: flat.numel()] = flat
        xs = padded.reshape(uses, num_sc, num_tx)  # (U, F, T)
        hf = h.permute(2, 0, 1).to(x.device)  # (F, R, T)
        y = (hf @ xs.unsqueeze(-1)).squeeze(-1)  # (U, F, R)
        # Sionna's AWGN block draws from its global generator; we draw with ours instead.
        noise = torch.randn(
            y.shape, dtype=torch.complex64, generator=generator, device=generator.device
        )
        y = y + math.sqrt(no) * noise.to(y.device)
        x_hat, no_eff = lmmse_equalize(y, hf, no)  # (U, F, T)
        size = flat.numel()
        return (
            x_hat.reshape(-1)[:size].reshape(x.shape),
            no_eff.reshape(-1)[:size].reshape(x.shape),
            uses * num_sc,
        )

    def _check_payload(self, bits: Tensor | int) -> Tensor:
        if not isinstance(bits, Tensor):
            raise TypeError(
                f"BitLevelLink sends real bits: `payloads` entries must be uint8 bit tensors, "
                f"got {type(bits).__name__}."
            )
        if bits.numel() > self.max_payload_bits:
            raise ValueError(
                f"A payload of {bits.numel()} bits exceeds `max_payload_bits` "
                f"({self.max_payload_bits}): the CPU LDPC decoder runs at about 0.1 Mbit/s. Use "
                "AbstractionLink for model-scale payloads, or raise `max_payload_bits`."
            )
        return bits

    def _to_blocks(self, bits: Tensor) -> Tensor:
        num = math.ceil(bits.numel() / self.block_bits)
        padded = torch.zeros(num * self.block_bits, dtype=torch.float32, device=self._device)
        padded[: bits.numel()] = bits.to(device=self._device, dtype=torch.float32)
        return padded.reshape(num, self.block_bits)


def _report(
    results: list[dict], block_bits: int, bandwidth_hz: float, power_w: float
) -> LinkReport:
    """Gather per-client results into a :class:`LinkReport`."""

    def ints(key: str) -> Tensor:
        return torch.tensor([r[key] for r in results], dtype=torch.int64)

    offered = ints("offered").to(torch.float64)
    delivered = torch.tensor(
        [delivered_bits(r["ok"], block_bits, r["offered"]) for r in results],
        dtype=torch.float64,
    )
    airtime = symbol_airtime_s(ints("uses"), bandwidth_hz)
    num_blocks = torch.tensor([len(r["ok"]) for r in results], dtype=torch.int64)
    return LinkReport(
        block_ok=[r["ok"] for r in results],
        block_bits=[block_bits] * len(results),
        received_bits=[r["rx"] for r in results],
        bits_offered=offered,
        bits_delivered=delivered,
        block_transmissions=ints("tx"),
        block_errors=ints("errors"),
        retransmissions=ints("tx") - num_blocks,
        airtime_s=airtime,
        energy_j=energy_j(power_w, airtime),
        channel_bit_errors=ints("chan_err"),
        channel_bits=ints("chan_bits"),
    )


def _check_choice(name: str, value: object, choices: tuple) -> None:
    if value not in choices or isinstance(value, bool):
        raise ValueError(f"`{name}` ({value!r}) must be one of {choices}.")


def _check_code(code_rate: float, block_length: int, bits_per_symbol: int, crc: int) -> None:
    if not (isinstance(code_rate, (int, float)) and 0 < code_rate < 1):
        raise ValueError(f"`code_rate` ({code_rate!r}) must be in (0, 1).")
    check_int_at_least("block_length", block_length, 1)
    if block_length % bits_per_symbol:
        raise ValueError(
            f"`block_length` ({block_length}) must be a multiple of `num_bits_per_symbol` "
            f"({bits_per_symbol})."
        )
    info = round(code_rate * block_length)
    if not crc < info <= LDPC_MAX_INFO_BITS:
        raise ValueError(
            f"`code_rate` * `block_length` ({info} information bits) must exceed the CRC length "
            f"({crc}) and be <= {LDPC_MAX_INFO_BITS} (the 5G LDPC limit)."
        )
