"""The LDPC waterfall of the bit-level link, and the PHY abstraction's BLER against it.

Code: the one Sionna tabulates for PUSCH MCS 7 of table 1 (QPSK, target rate 0.514) at its
smallest code block size: 24 LDPC information bits (18 payload + CRC6) on 48 coded bits, 20 BP
iterations, AWGN. 300 blocks per SNR at three SNRs of the table's grid across the waterfall
(0.36, 2.14 and 3.93 dB, tabulated BLER 0.65, 0.24, 0.035).

Tolerance: at those grid points the abstraction returns Sionna's simulated value (through an
interpolation on a 0.1 dB grid), so the bit-level BLER must lie within 3 binomial standard
deviations of 300 blocks (<= 0.087) plus 0.03 for the table's own Monte-Carlo error.
"""

from __future__ import annotations

import pytest
import torch

from lit_airlora.channel.abstraction import AbstractionLink
from lit_airlora.channel.bit_level import BitLevelLink

SNR_DB = (0.357, 2.143, 3.929)
NUM_BLOCKS = 300
TABLE_TOLERANCE = 0.03
CB_SIZE, CODED_BITS, MCS = 24, 48, 7


@pytest.fixture(scope="module")
def bit_level_bler() -> list[float]:
    link = BitLevelLink(
        num_bits_per_symbol=2,
        code_rate=CB_SIZE / CODED_BITS,
        block_length=CODED_BITS,
        crc_degree="CRC6",
    )
    assert link.ldpc_info_bits == CB_SIZE
    generator = torch.Generator().manual_seed(0)
    bits = torch.randint(0, 2, (NUM_BLOCKS * link.block_bits,), generator=generator)
    fading = torch.ones(len(SNR_DB), 1, 1, 1, dtype=torch.complex64)
    payloads = [bits.to(torch.uint8)] * len(SNR_DB)
    report = link.transmit(payloads, torch.tensor(SNR_DB), fading, generator)
    return (report.block_errors.double() / NUM_BLOCKS).tolist()


def test_ldpc_bler_waterfall(bit_level_bler):
    low, mid, high = bit_level_bler
    assert low > mid > high
    assert low > 0.5 and high < 0.1


def test_abstraction_agrees_with_bit_level(bit_level_bler):
    link = AbstractionLink(mcs_index=MCS)
    link.setup("cpu")
    for snr_db, measured in zip(SNR_DB, bit_level_bler, strict=True):
        table = float(link.code_block_error_rate(snr_db, CB_SIZE, MCS))
        tolerance = 3 * (table * (1 - table) / NUM_BLOCKS) ** 0.5 + TABLE_TOLERANCE
        assert measured == pytest.approx(table, abs=tolerance), snr_db
