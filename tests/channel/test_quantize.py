"""Quantisers: error bounds, unbiased stochastic rounding, bit counts, bit packing."""

from __future__ import annotations

import pytest
import torch

from lit_airlora.channel.quantize import (
    SCALE_BITS,
    BFloat16,
    Float16,
    Quantizer,
    StochasticQuantizer,
    UniformQuantizer,
    pack_bits,
    segment_amax,
    unpack_bits,
)


def _values(n: int = 1000, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_uniform_error_at_most_half_a_step(bits):
    quantizer = UniformQuantizer(bits)
    x = _values()
    q = quantizer.quantize(x)
    step = 2 * x.abs().max() / (2**bits - 1)
    assert int(q.codes.min()) >= 0 and int(q.codes.max()) <= 2**bits - 1
    error = (quantizer.dequantize(q) - x).abs().max()
    assert error <= step / 2 * (1 + 1e-5)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_stochastic_error_below_one_step(bits):
    quantizer = StochasticQuantizer(bits)
    x = _values()
    q = quantizer.quantize(x, torch.Generator().manual_seed(1))
    step = 2 * x.abs().max() / (2**bits - 1)
    assert (quantizer.dequantize(q) - x).abs().max() < step * (1 + 1e-5)


def test_stochastic_rounding_is_unbiased():
    # Mean of 4000 independent roundings of 16 values. Each rounding error has |e| < step and
    # variance <= step^2 / 4, so the mean's standard deviation is <= step / (2 sqrt(4000));
    # tolerance: 5 standard deviations.
    quantizer, draws = StochasticQuantizer(2), 4000
    x = _values(16, seed=3)
    generator = torch.Generator().manual_seed(4)
    mean = torch.stack(
        [quantizer.dequantize(quantizer.quantize(x, generator)) for _ in range(draws)]
    ).mean(0)
    step = float(2 * x.abs().max() / 3)
    assert (mean - x).abs().max() < 5 * step / (2 * draws**0.5)
    # The deterministic quantiser is biased on the same values (sanity of the test's power).
    biased = UniformQuantizer(2).dequantize(UniformQuantizer(2).quantize(x))
    assert (biased - x).abs().max() > 10 * step / (2 * draws**0.5)


def test_stochastic_rounding_needs_a_generator():
    with pytest.raises(ValueError, match="generator"):
        StochasticQuantizer(4).quantize(_values(8))


def test_zero_tensor_and_empty_tensor():
    quantizer = UniformQuantizer(4)
    assert torch.equal(quantizer.dequantize(quantizer.quantize(torch.zeros(5))), torch.zeros(5))
    assert quantizer.quantize(torch.zeros(0)).codes.numel() == 0


@pytest.mark.parametrize("cls,dtype", [(Float16, torch.float16), (BFloat16, torch.bfloat16)])
def test_float_formats_round_trip_exactly(cls, dtype):
    x = _values(64).to(dtype).float()
    quantizer = cls()
    q = quantizer.quantize(x)
    assert int(q.codes.min()) >= 0 and int(q.codes.max()) < 2**16
    assert torch.equal(quantizer.dequantize(q), x)


def test_float16_clamps_out_of_range_values():
    out = Float16().dequantize(Float16().quantize(torch.tensor([1e6, -1e6])))
    assert torch.isfinite(out).all()


def test_bit_counts_include_side_information():
    assert UniformQuantizer(4).payload_bits(100, 3) == 100 * 4 + 3 * SCALE_BITS
    assert StochasticQuantizer(2).payload_bits(10, 1) == 10 * 2 + SCALE_BITS
    assert Float16().payload_bits(100, 3) == 1600
    assert BFloat16().payload_bits(7, 2) == 112


@pytest.mark.parametrize("bits", [3, 16, 1, True])
def test_unsupported_bits_name_the_supported_ones(bits):
    with pytest.raises(ValueError, match=r"`bits` .* use one of \(2, 4, 8\)"):
        UniformQuantizer(bits)


@pytest.mark.parametrize("bits", [2, 8, 16])
def test_pack_unpack_round_trip(bits):
    codes = torch.randint(0, 2**bits, (50,), generator=torch.Generator().manual_seed(0))
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == 50 * bits
    assert set(packed.unique().tolist()) <= {0, 1}
    assert torch.equal(unpack_bits(packed, bits), codes)
    assert pack_bits(torch.tensor([6]), 4).tolist() == [0, 1, 1, 0]  # MSB first


SEGMENT_COUNTS = [7, 0, 25, 1, 40]


class _PerTensorOnly(UniformQuantizer):
    """Keeps the base class's loop over segments (a quantiser that does not vectorise)."""

    quantize_segments = Quantizer.quantize_segments
    dequantize_segments = Quantizer.dequantize_segments


@pytest.mark.parametrize(
    "quantizer", [UniformQuantizer(2), UniformQuantizer(8), Float16(), _PerTensorOnly(4)]
)
def test_segments_match_a_loop_over_tensors(quantizer):
    values = _values(sum(SEGMENT_COUNTS), seed=5) * torch.linspace(0.1, 10, sum(SEGMENT_COUNTS))
    values[:7] = 0.0  # an all-zero tensor: scale 0
    segments = quantizer.quantize_segments(values, SEGMENT_COUNTS)
    parts = [quantizer.quantize(v) for v in values.split(SEGMENT_COUNTS)]
    assert torch.equal(segments.codes, torch.cat([p.codes for p in parts]))
    assert torch.equal(segments.scales, torch.stack([p.scale for p in parts]))
    expected = torch.cat([quantizer.dequantize(p) for p in parts])
    assert torch.equal(quantizer.dequantize_segments(segments), expected)


def test_stochastic_segments_are_seeded_and_within_one_step():
    quantizer, values = StochasticQuantizer(4), _values(sum(SEGMENT_COUNTS), seed=6)
    first, again = (
        quantizer.quantize_segments(values, SEGMENT_COUNTS, torch.Generator().manual_seed(2))
        for _ in range(2)
    )
    assert torch.equal(first.codes, again.codes)
    received = quantizer.dequantize_segments(first)
    for part, sent, scale in zip(
        received.split(SEGMENT_COUNTS), values.split(SEGMENT_COUNTS), first.scales, strict=True
    ):
        step = 2 * scale / 15
        assert ((part - sent).abs() <= step * (1 + 1e-5)).all()


def test_segment_amax_of_empty_segments_is_zero():
    values = torch.tensor([1.0, 3.0, 2.0, 5.0])
    assert segment_amax(values, [0, 3, 0, 1]).tolist() == [0.0, 3.0, 0.0, 5.0]
    assert UniformQuantizer(8).quantize_segments(torch.zeros(0), []).codes.numel() == 0
