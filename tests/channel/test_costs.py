"""Rate and cost helpers: NR numerology, airtime combination, energy, capacity."""

from __future__ import annotations

import math

import pytest
import torch

from lit_airlora.channel.costs import (
    combined_airtime_s,
    energy_j,
    num_blocks,
    num_prbs,
    resource_elements_per_slot,
    shannon_rate_bps,
    slot_duration_s,
    symbol_airtime_s,
)


def test_nr_numerology():
    assert slot_duration_s(15e3) == pytest.approx(1e-3)
    assert slot_duration_s(30e3) == pytest.approx(0.5e-3)
    assert num_prbs(20e6, 30e3) == 55  # no guard bands
    assert num_prbs(100e3, 30e3) == 0
    assert resource_elements_per_slot(2, 12, num_streams=2) == 2 * 12 * 12 * 2


def test_airtime_combination_over_clients():
    per_client = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64)
    assert combined_airtime_s(per_client, "ofdma") == 3.0
    assert combined_airtime_s(per_client, "fdma") == 3.0
    assert combined_airtime_s(per_client, "tdma") == 6.0
    assert combined_airtime_s(torch.zeros(0), "tdma") == 0.0
    with pytest.raises(ValueError, match="multiple_access"):
        combined_airtime_s(per_client, "cdma")


def test_energy_airtime_and_capacity():
    assert float(symbol_airtime_s(2e6, 1e6)) == pytest.approx(2.0)
    assert float(energy_j(0.2, torch.tensor(3.0))) == pytest.approx(0.6)
    assert float(shannon_rate_bps(1e6, 10 * math.log10(3))) == pytest.approx(2e6)
    assert num_blocks(10, 4) == 3 and num_blocks(0, 4) == 0
