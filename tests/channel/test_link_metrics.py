"""Round metrics of digital links from summed per-client counts."""

from __future__ import annotations

import pytest
import torch

from lit_airlora.channel.link_metrics import LINK_COUNTS, round_link_metrics


def _total(**values) -> dict[str, float]:
    return {**dict.fromkeys(LINK_COUNTS, 0.0), **values}


def test_rates_and_airtime_of_a_round():
    total = _total(
        bits_offered=1000.0, bits_delivered=750.0, block_transmissions=8.0, block_errors=2.0,
        channel_bit_errors=5.0, channel_bits=500.0, snr_db=30.0, clients=3.0,
    )  # fmt: skip
    airtime_s = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64)
    metrics = round_link_metrics(total, airtime_s, "tdma", corrupts_bits=True)
    assert metrics["comm/delivered_fraction"] == 0.75 and metrics["channel/bler"] == 0.25
    assert metrics["channel/ber"] == 0.01 and metrics["channel/snr_db_mean"] == 10.0
    assert metrics["comm/airtime_s"] == pytest.approx(6.0)
    ofdma = round_link_metrics(total, airtime_s, "ofdma", corrupts_bits=False)
    assert ofdma["comm/airtime_s"] == pytest.approx(3.0) and "channel/ber" not in ofdma


def test_an_empty_round_gives_zero_rates():
    metrics = round_link_metrics(_total(), torch.zeros(0), "ofdma", corrupts_bits=False)
    assert metrics["comm/delivered_fraction"] == 0.0 and metrics["channel/bler"] == 0.0
    assert metrics["comm/airtime_s"] == 0.0
