"""Links between tiers: an activation (or its gradient) in, what the next tier receives out.

A tensor link sends one tensor per call, built on the channel package: the quantisers of
:mod:`lit_airlora.channel.quantize`, the fading and SNR models of
:mod:`lit_airlora.channel.fading` / :mod:`~lit_airlora.channel.large_scale`, and the digital
links of :mod:`lit_airlora.channel.link` (block errors, HARQ, airtime). Links are chosen in
YAML by ``class_path``; all randomness comes from the generator the caller passes, so a stream's
channel does not depend on the DDP rank that simulates it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lit_airlora.channel.checks import check_positive
from lit_airlora.channel.costs import energy_j, symbol_airtime_s
from lit_airlora.channel.fading import AWGN, SmallScale
from lit_airlora.channel.large_scale import FixedSNR, LargeScale
from lit_airlora.channel.link import DigitalLink, noise_variance, received_value_mask
from lit_airlora.channel.quantize import (
    QuantizedSegments,
    Quantizer,
    UniformQuantizer,
    pack_bits,
    unpack_bits,
)
from lit_airlora.federated.upload import FLOAT32_BITS
from lit_airlora.init_args import RecordsInitArgs


@dataclass
class Transfer:
    """One tensor across one link.

    Attributes:
        received: What the receiver gets, same shape and dtype as the sent tensor.
        bits: Payload bits offered to the link (0 for an analog link).
        symbols: Complex channel uses (analog link; 0 otherwise).
        airtime_s: Time on the link in seconds.
        energy_j: Transmit energy of the sending tier in joules (its power x the airtime).
    """

    received: Tensor
    bits: float
    symbols: float
    airtime_s: float
    energy_j: float


class TensorLink(RecordsInitArgs):
    """Base class: ``send(x, generator) -> Transfer``. The default is a perfect link.

    The tier that sends on the link transmits at ``tx_power_w`` for the transfer's airtime:
    ``energy_j = tx_power_w * airtime_s`` (a backhaul link carries both directions at the same
    power).

    Args:
        rate_bps: Link rate in bit/s used for the airtime of digital payloads
            (``bits / rate_bps``).
        tx_power_w: Transmit power of the sending tier in watts (energy accounting).
    """

    def __init__(self, rate_bps: float = 100e6, tx_power_w: float = 0.2) -> None:
        check_positive("rate_bps", rate_bps)
        check_positive("tx_power_w", tx_power_w)
        self.rate_bps, self.tx_power_w = float(rate_bps), float(tx_power_w)

    def _digital(self, received: Tensor, bits: float) -> Transfer:
        """The transfer of ``bits`` at ``rate_bps``: airtime ``bits / rate``, energy ``P t``."""
        airtime = bits / self.rate_bps
        return Transfer(received, bits, 0.0, airtime, float(energy_j(self.tx_power_w, airtime)))

    def setup(self, device: torch.device | str) -> None:
        """Build any Sionna blocks on ``device`` (idempotent)."""

    def send(self, x: Tensor, generator: torch.Generator) -> Transfer:
        """Send ``x`` (any shape, float); ``generator`` (on ``x.device``) drives all draws."""
        return self._digital(x.detach().clone(), float(FLOAT32_BITS * x.numel()))


class IdealLink(TensorLink):
    """Float32 values delivered exactly (the equality reference)."""


class QuantizedLink(TensorLink):
    """Source coding only: ``quantizer`` codes (one scale per tensor), delivered without error.

    Args:
        quantizer: The source coder (default 8-bit ``UniformQuantizer``).
        rate_bps: Link rate in bit/s.
        tx_power_w: Transmit power of the sending tier in watts.
    """

    def __init__(
        self, quantizer: Quantizer | None = None, rate_bps: float = 100e6, tx_power_w: float = 0.2
    ) -> None:
        super().__init__(rate_bps, tx_power_w)
        self.quantizer = UniformQuantizer(8) if quantizer is None else quantizer

    def send(self, x: Tensor, generator: torch.Generator) -> Transfer:
        coded = self.quantizer.quantize_segments(x.detach().reshape(-1), [x.numel()], generator)
        received = self.quantizer.dequantize_segments(coded).view_as(x).to(x.dtype)
        return self._digital(received, float(self.quantizer.payload_bits(x.numel(), 1)))


class AnalogLink(TensorLink):
    """Uncoded analog transmission over fading with receiver noise, zero-forcing equalised.

    Real values are paired into complex symbols, normalised to unit mean power (the norm is side
    information sent error-free), multiplied by the block's fading ``h`` (one draw per tensor,
    symbols spread over its subcarriers), hit by ``CN(0, N_0)`` noise at the link's SNR and
    divided by ``h``: the receiver gets ``x + e``, ``E|e|^2 = P N_0 / |h|^2`` per value pair.

    Args:
        large_scale: Mean SNR of the link (default ``FixedSNR(20.0)``); drawn for id 0.
        small_scale: Fading block (default ``AWGN()``).
        bandwidth_hz: Symbol rate (airtime = symbols / bandwidth).
        tx_power_w: Transmit power of the sending tier in watts (unit-power symbols at it).
    """

    def __init__(
        self,
        large_scale: LargeScale | None = None,
        small_scale: SmallScale | None = None,
        bandwidth_hz: float = 20e6,
        tx_power_w: float = 0.2,
    ) -> None:
        super().__init__(tx_power_w=tx_power_w)
        check_positive("bandwidth_hz", bandwidth_hz)
        self.large_scale = FixedSNR(20.0) if large_scale is None else large_scale
        self.small_scale = AWGN() if small_scale is None else small_scale
        self.bandwidth_hz = float(bandwidth_hz)

    def setup(self, device: torch.device | str) -> None:
        self.small_scale.setup(device)

    def send(self, x: Tensor, generator: torch.Generator) -> Transfer:
        values = x.detach().reshape(-1).float()
        padded = torch.nn.functional.pad(values, (0, values.numel() % 2))
        symbols = torch.view_as_complex(padded.view(-1, 2).contiguous())  # (S,)
        power = symbols.abs().pow(2).mean().clamp(min=1e-30)
        snr_db = self.large_scale.snr_db([0], torch.Generator().manual_seed(_cpu_seed(generator)))
        h = self.small_scale.draw(1, generator, x.device)[0, 0, 0]  # (num_subcarriers,)
        gains = h.repeat(-(-symbols.numel() // h.numel()))[: symbols.numel()]
        n0 = float(noise_variance(snr_db)[0])
        noise = torch.randn(
            symbols.shape, dtype=torch.complex64, generator=generator, device=x.device
        )
        received = symbols + noise * (n0 * power).sqrt() / gains
        out = torch.view_as_real(received).reshape(-1)[: values.numel()]
        airtime = symbol_airtime_s(symbols.numel(), self.bandwidth_hz)
        energy = float(energy_j(self.tx_power_w, airtime))
        return Transfer(
            out.view_as(x).to(x.dtype), 0.0, float(symbols.numel()), float(airtime), energy
        )


class DigitalTensorLink(TensorLink):
    """Quantised values over a :class:`DigitalLink` (block errors, HARQ, airtime).

    Values whose bits fall in a block lost after all retransmissions arrive as zero; a
    bit-level link's undetected bit errors corrupt the codes they hit. Airtime and energy are
    the digital link's own report (its ``tx_power_w`` times the airtime of every transmission,
    retransmissions included), so this class's ``tx_power_w`` is not used.

    Args:
        link: The digital link (``AbstractionLink`` or ``BitLevelLink``).
        quantizer: Source coding (default 8-bit ``UniformQuantizer``).
        large_scale: Mean SNR of the link (default ``FixedSNR(20.0)``).
        small_scale: Fading block (default ``AWGN()``).
    """

    def __init__(
        self,
        link: DigitalLink,
        quantizer: Quantizer | None = None,
        large_scale: LargeScale | None = None,
        small_scale: SmallScale | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(link, DigitalLink):
            raise TypeError(f"`link` ({type(link).__name__}) must be a DigitalLink.")
        self.link = link
        self.quantizer = UniformQuantizer(8) if quantizer is None else quantizer
        self.large_scale = FixedSNR(20.0) if large_scale is None else large_scale
        self.small_scale = AWGN() if small_scale is None else small_scale

    def setup(self, device: torch.device | str) -> None:
        self.link.setup(device)
        self.small_scale.setup(device)

    def send(self, x: Tensor, generator: torch.Generator) -> Transfer:
        num_values, width = x.numel(), self.quantizer.bits_per_value
        coded = self.quantizer.quantize_segments(x.detach().reshape(-1), [num_values], generator)
        bits = self.quantizer.payload_bits(num_values, 1)
        payload = pack_bits(coded.codes, width) if self.link.corrupts_bits else bits
        snr_db = self.large_scale.snr_db([0], torch.Generator().manual_seed(_cpu_seed(generator)))
        fading = self.small_scale.draw(1, generator, x.device)
        report = self.link.transmit([payload], snr_db, fading, [generator])
        ok = received_value_mask(report.block_ok[0], report.block_bits[0], num_values, width)
        codes = coded.codes
        if report.received_bits[0] is not None:
            codes = unpack_bits(report.received_bits[0][: num_values * width], width)
        values = self.quantizer.dequantize_segments(
            QuantizedSegments(codes, coded.scales, coded.counts)
        )
        values = torch.where(ok & values.isfinite(), values, torch.zeros_like(values))
        airtime, energy = float(report.airtime_s[0]), float(report.energy_j[0])
        return Transfer(values.view_as(x).to(x.dtype), float(bits), 0.0, airtime, energy)


def _cpu_seed(generator: torch.Generator) -> int:
    """A seed for CPU-side draws (large-scale SNR), taken from the transfer's generator."""
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
