"""BitLevelLink: exact delivery at high SNR, counted losses and retransmissions at low SNR."""

from __future__ import annotations

import pytest
import torch

from lit_airlora.channel.bit_level import BitLevelLink

BLOCK_LENGTH, CODE_RATE = 128, 0.5  # 64 LDPC information bits, 48 payload bits (CRC16)


@pytest.fixture(scope="module")
def link() -> BitLevelLink:
    # Retransmissions only happen at low SNR; the high-SNR tests share the same built link.
    link = BitLevelLink(
        block_length=BLOCK_LENGTH, code_rate=CODE_RATE, bandwidth_hz=1e6, max_retransmissions=2
    )
    link.setup("cpu")
    return link


def _bits(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(seed)).to(torch.uint8)


def _awgn(k: int = 1) -> torch.Tensor:
    return torch.ones(k, 1, 1, 1, dtype=torch.complex64)


def test_high_snr_delivers_every_bit(link):
    payloads = [_bits(100), _bits(48, seed=1)]
    report = link.transmit(payloads, torch.tensor([30.0, 30.0]), _awgn(2), torch.Generator())
    assert link.block_bits == 48
    for sent, received, ok in zip(payloads, report.received_bits, report.block_ok, strict=True):
        assert torch.equal(received, sent) and bool(ok.all())
    assert report.bits_delivered.tolist() == [100.0, 48.0]
    assert report.block_errors.tolist() == [0, 0] and report.retransmissions.tolist() == [0, 0]
    # 3 and 1 blocks of 64 QPSK symbols on one subcarrier at 1e6 symbols per second.
    torch.testing.assert_close(report.airtime_s, torch.tensor([192e-6, 64e-6], dtype=torch.float64))
    torch.testing.assert_close(report.energy_j, 0.2 * report.airtime_s)


def test_mimo_ofdm_fading_at_high_snr(link):
    h = torch.randn(1, 2, 2, 4, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    bits = _bits(200, seed=2)
    report = link.transmit([bits], torch.tensor([35.0]), h, torch.Generator().manual_seed(1))
    assert torch.equal(report.received_bits[0], bits)
    # 5 blocks x 64 symbols over 2 streams x 4 subcarriers: 40 channel uses of 4 subcarriers.
    assert float(report.airtime_s[0]) == pytest.approx(160e-6)


def test_low_snr_drops_and_counts_retransmissions(link):
    report = link.transmit([_bits(96)], torch.tensor([-10.0]), _awgn(), torch.Generator())
    assert report.blocks_dropped().tolist() == [2] and report.bits_delivered.tolist() == [0.0]
    assert report.block_transmissions.tolist() == [6] and report.block_errors.tolist() == [6]
    assert report.retransmissions.tolist() == [4]
    assert float(report.airtime_s[0]) == pytest.approx(6 * 64 / 1e6)
    assert 0.2 < float(report.channel_bit_errors[0] / report.channel_bits[0]) < 0.5


def test_same_generator_seed_same_outcome(link):
    def run() -> torch.Tensor:
        report = link.transmit(
            [_bits(240)], torch.tensor([1.0]), _awgn(), torch.Generator().manual_seed(7)
        )
        return report.received_bits[0]

    assert torch.equal(run(), run())


def test_refuses_large_or_count_payloads():
    link = BitLevelLink(block_length=BLOCK_LENGTH, code_rate=CODE_RATE, max_payload_bits=100)
    with pytest.raises(ValueError, match="AbstractionLink"):
        link.transmit([_bits(101)], torch.tensor([10.0]), _awgn(), torch.Generator())
    with pytest.raises(TypeError, match="bit tensors"):
        link.transmit([100], torch.tensor([10.0]), _awgn(), torch.Generator())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"code_rate": 1.2}, "code_rate"),
        ({"block_length": 129}, "multiple of `num_bits_per_symbol`"),
        ({"block_length": 32, "code_rate": 0.5}, "CRC length"),
        ({"num_bits_per_symbol": 3}, "num_bits_per_symbol"),
        ({"crc_degree": "CRC32"}, "crc_degree"),
        ({"bandwidth_hz": 0.0}, "bandwidth_hz"),
        ({"tx_power_w": -1.0}, "tx_power_w"),
        ({"max_retransmissions": -1}, "max_retransmissions"),
    ],
)
def test_invalid_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BitLevelLink(**kwargs)
