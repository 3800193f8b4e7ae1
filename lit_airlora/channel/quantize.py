"""Source coding for digital uplinks: float payloads to integer codes of a few bits, and back.

A quantiser turns the flat vector of values one tensor sends into integer ``codes`` of
``bits_per_value`` bits each (plus per-tensor side information, e.g. a float32 scale), so a
digital link can pack them into bits, corrupt or drop them, and the server can map the received
codes back to values. An upload's tensors are quantised in one pass over their concatenated
values (``quantize_segments``: one segment, and one scale, per tensor), as a loop over hundreds
of small tensors costs far more than the arithmetic. Quantisers are chosen from YAML by
``class_path``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lit_airlora.init_args import RecordsInitArgs

#: Bits of the float32 scale a scaled quantiser sends per tensor as side information.
SCALE_BITS = 32
#: Bit widths of the scaled quantisers.
SUPPORTED_BITS = (2, 4, 8)


@dataclass
class QuantizedTensor:
    """One tensor's quantised values.

    Attributes:
        codes: ``[N]`` int64 codes in ``[0, 2**bits_per_value)``.
        scale: ``[]`` float32 per-tensor scale (side information; unused by float formats).
    """

    codes: Tensor
    scale: Tensor


@dataclass
class QuantizedSegments:
    """Quantised values of consecutive segments (one tensor each) of a flat vector.

    Attributes:
        codes: ``[N]`` int64 codes of all segments, in order.
        scales: ``[T]`` float32 per-segment scales (zeros for float formats).
        counts: Values per segment (summing to ``N``).
    """

    codes: Tensor
    scales: Tensor
    counts: list[int]


class Quantizer(RecordsInitArgs):
    """Base class: values ``[N]`` float -> codes ``[N]`` of ``bits_per_value`` bits, and back.

    Attributes:
        bits_per_value: Bits of one code on the air.
        side_info_bits: Bits of side information per tensor (sent error-free, counted).
    """

    bits_per_value: int = 32
    side_info_bits: int = 0

    def quantize(self, values: Tensor, generator: torch.Generator | None = None) -> QuantizedTensor:
        """Codes of ``values`` (``[N]``, float); ``generator`` drives any random rounding."""
        raise NotImplementedError

    def dequantize(self, quantized: QuantizedTensor) -> Tensor:
        """``[N]`` float32 values of the codes (possibly non-finite if a float code is corrupt)."""
        raise NotImplementedError

    def payload_bits(self, num_values: int, num_tensors: int) -> int:
        """Bits on the air for ``num_values`` values spread over ``num_tensors`` tensors."""
        return num_values * self.bits_per_value + num_tensors * self.side_info_bits

    def quantize_segments(
        self, values: Tensor, counts: Sequence[int], generator: torch.Generator | None = None
    ) -> QuantizedSegments:
        """Codes of ``values`` (``[N]``) cut in segments of ``counts``, each its own tensor.

        Same codes as :meth:`quantize` on every segment; subclasses vectorise this loop.
        """
        parts = [self.quantize(v, generator) for v in values.split(list(counts))]
        if not parts:
            return _empty_segments(values.device)
        codes = torch.cat([p.codes for p in parts])
        return QuantizedSegments(codes, torch.stack([p.scale for p in parts]), list(counts))

    def dequantize_segments(self, quantized: QuantizedSegments) -> Tensor:
        """``[N]`` float32 values of segmented codes (:meth:`dequantize` on every segment)."""
        parts = [
            self.dequantize(QuantizedTensor(codes, scale))
            for codes, scale in zip(
                quantized.codes.split(quantized.counts), quantized.scales, strict=True
            )
        ]
        return torch.cat(parts) if parts else torch.zeros(0, device=quantized.codes.device)


class _FloatFormat(Quantizer):
    """Values cast to a 16-bit float format; the code is its bit pattern."""

    bits_per_value = 16
    dtype: torch.dtype = torch.float16

    def quantize(self, values: Tensor, generator: torch.Generator | None = None) -> QuantizedTensor:
        # Clamp first: a value beyond the format's range would otherwise become inf on the air.
        limit = torch.finfo(self.dtype).max
        cast = values.float().clamp(-limit, limit).to(self.dtype)
        codes = cast.view(torch.int16).to(torch.int64) & 0xFFFF
        return QuantizedTensor(codes, torch.zeros((), device=values.device))

    def dequantize(self, quantized: QuantizedTensor) -> Tensor:
        codes = quantized.codes
        signed = torch.where(codes >= 1 << 15, codes - (1 << 16), codes).to(torch.int16)
        return signed.view(self.dtype).to(torch.float32)

    def quantize_segments(
        self, values: Tensor, counts: Sequence[int], generator: torch.Generator | None = None
    ) -> QuantizedSegments:
        # Element-wise format: no per-segment side information.
        codes = self.quantize(values, generator).codes
        scales = torch.zeros(len(counts), device=values.device)
        return QuantizedSegments(codes, scales, list(counts))

    def dequantize_segments(self, quantized: QuantizedSegments) -> Tensor:
        return self.dequantize(QuantizedTensor(quantized.codes, quantized.scales))


class Float16(_FloatFormat):
    """IEEE half precision, sent as is (16 bits per value, no side information)."""

    dtype = torch.float16


class BFloat16(_FloatFormat):
    """bfloat16 (8-bit exponent, 7-bit mantissa), sent as is (16 bits per value)."""

    dtype = torch.bfloat16


class UniformQuantizer(Quantizer):
    """Deterministic uniform quantiser with a per-tensor scale (round to nearest level).

    With scale ``s = max |x|`` and ``L = 2^b - 1`` intervals of width ``delta = 2 s / L``, a value
    is sent as ``code = round((x + s) / delta)`` in ``[0, L]`` and received as
    ``code * delta - s``; the error is at most ``delta / 2``. The float32 scale is side
    information (32 bits per tensor).

    Args:
        bits: Bits per value, one of :data:`SUPPORTED_BITS`.
    """

    side_info_bits = SCALE_BITS

    def __init__(self, bits: int = 8) -> None:
        _check_bits(bits)
        self.bits_per_value = bits

    @property
    def num_intervals(self) -> int:
        return (1 << self.bits_per_value) - 1

    def quantize(self, values: Tensor, generator: torch.Generator | None = None) -> QuantizedTensor:
        scale = (
            values.detach().float().abs().max()
            if values.numel()
            else torch.zeros((), device=values.device)
        )
        position = self._position(values, scale)
        codes = self._round(position, generator).clamp(0, self.num_intervals)
        return QuantizedTensor(codes.to(torch.int64), scale.to(torch.float32))

    def dequantize(self, quantized: QuantizedTensor) -> Tensor:
        step = self.step(quantized.scale)
        return quantized.codes.to(torch.float32) * step - quantized.scale

    def quantize_segments(
        self, values: Tensor, counts: Sequence[int], generator: torch.Generator | None = None
    ) -> QuantizedSegments:
        # The per-tensor formulas of `quantize`, with each segment's scale and step repeated over
        # its values: the codes are bit-identical to a loop over the segments.
        counts = list(counts)
        magnitude = values.detach().float().abs()
        scales = segment_amax(magnitude, counts)
        steps = self.step(scales)
        scale_v, step_v = _repeat(scales, counts), _repeat(steps, counts)
        position = (values.detach().float() + scale_v) / step_v
        position = torch.where(step_v == 0, torch.zeros_like(position), position)
        codes = self._round(position, generator).clamp(0, self.num_intervals)
        return QuantizedSegments(codes.to(torch.int64), scales, counts)

    def dequantize_segments(self, quantized: QuantizedSegments) -> Tensor:
        counts = quantized.counts
        step_v = _repeat(self.step(quantized.scales), counts)
        return quantized.codes.to(torch.float32) * step_v - _repeat(quantized.scales, counts)

    def step(self, scale: Tensor) -> Tensor:
        """Width ``delta = 2 s / (2^b - 1)`` of one quantisation interval."""
        return 2.0 * scale / self.num_intervals

    def _position(self, values: Tensor, scale: Tensor) -> Tensor:
        """Values on the level grid: ``(x + s) / delta`` in ``[0, L]`` (zeros if ``s == 0``)."""
        step = self.step(scale)
        if float(step) == 0.0:
            return torch.zeros_like(values, dtype=torch.float32)
        return (values.float() + scale) / step

    def _round(self, position: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.round(position)


class StochasticQuantizer(UniformQuantizer):
    """Uniform quantiser with unbiased stochastic rounding (QSGD-style; Alistarh et al., 2017).

    Same grid as :class:`UniformQuantizer`, but a value between levels ``l`` and ``l + 1`` is
    rounded up with probability equal to its distance from ``l`` (in intervals), so the received
    value is unbiased, ``E[Q(x)] = x``, and the error is below ``delta``. The rounding draws come
    from the explicit ``generator``.

    Args:
        bits: Bits per value, one of :data:`SUPPORTED_BITS`.
    """

    def _round(self, position: Tensor, generator: torch.Generator | None) -> Tensor:
        if generator is None:
            raise ValueError(
                "`generator` (None) is required by StochasticQuantizer: pass a seeded "
                "torch.Generator so the rounding is reproducible."
            )
        floor = torch.floor(position)
        draws = torch.rand(
            position.shape, generator=generator, device=generator.device, dtype=torch.float32
        ).to(position.device)
        return floor + (draws < position - floor).to(position.dtype)


def _check_bits(bits: object) -> None:
    if bits not in SUPPORTED_BITS or isinstance(bits, bool):
        raise ValueError(
            f"`bits` ({bits!r}) is not supported: use one of {SUPPORTED_BITS}, or Float16 / "
            "BFloat16 for 16 bits per value."
        )


def segment_amax(values: Tensor, counts: Sequence[int]) -> Tensor:
    """``[T]`` float32 maximum of each segment of non-negative ``values`` (0 when empty)."""
    segments = _repeat(torch.arange(len(counts), device=values.device), counts)
    initial = torch.zeros(len(counts), dtype=torch.float32, device=values.device)
    return initial.scatter_reduce(0, segments, values.float(), "amax")


def _repeat(per_segment: Tensor, counts: Sequence[int]) -> Tensor:
    """Each segment's entry repeated over its values: ``[T] -> [sum(counts)]``."""
    repeats = torch.as_tensor(counts, dtype=torch.int64, device=per_segment.device)
    return torch.repeat_interleave(per_segment, repeats, output_size=int(sum(counts)))


def _empty_segments(device: torch.device) -> QuantizedSegments:
    empty = torch.zeros(0, device=device)
    return QuantizedSegments(empty.to(torch.int64), empty, [])


def pack_bits(codes: Tensor, bits_per_value: int) -> Tensor:
    """Codes ``[N]`` (``< 2**bits_per_value``) -> ``[N * bits_per_value]`` uint8 bits, MSB first."""
    from sionna.phy.fec.utils import int2bin  # lazy: Sionna costs seconds to import

    return int2bin(codes.reshape(-1), bits_per_value).to(torch.uint8).reshape(-1)


def unpack_bits(bits: Tensor, bits_per_value: int) -> Tensor:
    """Bits ``[N * bits_per_value]`` (0/1, MSB first) -> codes ``[N]`` int64."""
    from sionna.phy.fec.utils import bin2int

    return bin2int(bits.reshape(-1, bits_per_value)).to(torch.int64)
