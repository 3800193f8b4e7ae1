"""FDMA shares: the Lambert-W closed form against bisection, equal finish times."""

import math

import numpy as np
import pytest
import torch

from lit_airlora.control.fdma import (
    equalise_finish_time,
    fdma_rate_bps,
    finish_times_s,
    share_for_rate,
)


def _bisection_share(rate_bps, bandwidth_hz, snr):
    low, high = 0.0, 1.0
    for _ in range(100):
        mid = (low + high) / 2
        if mid * bandwidth_hz * math.log2(1 + snr / mid) >= rate_bps:
            high = mid
        else:
            low = mid
    return high


def test_share_for_rate_matches_bisection_and_flags_infeasible_rates():
    snr = torch.tensor([0.5, 3.0, 30.0, 1000.0], dtype=torch.float64)
    rate = torch.tensor([1e5, 1e6, 2e6, 5e6], dtype=torch.float64)
    shares = share_for_rate(rate, 1e6, snr)
    oracle = [_bisection_share(float(r), 1e6, float(s)) for r, s in zip(rate, snr, strict=True)]
    np.testing.assert_allclose(shares.numpy(), oracle, rtol=1e-9)
    torch.testing.assert_close(fdma_rate_bps(shares, 1e6, snr), rate)
    full_band = fdma_rate_bps(torch.ones(1), 1e6, torch.tensor([3.0]))
    assert share_for_rate(full_band * 1.01, 1e6, torch.tensor([3.0])).isinf().all()
    assert share_for_rate(torch.zeros(1), 1e6, torch.tensor([3.0])).item() == 0


def test_equalised_allocation_finishes_together_and_uses_the_whole_band():
    g = torch.Generator().manual_seed(0)
    snr = torch.empty(6, dtype=torch.float64).exponential_(generator=g) * 10
    compute_s = torch.rand(6, generator=g, dtype=torch.float64)
    payload = torch.tensor([2e6, 5e5], dtype=torch.float64)
    latency_s, shares = equalise_finish_time(payload, compute_s, snr, 1e6)
    for g_idx in range(2):
        assert float(shares[g_idx].sum()) == pytest.approx(1.0, abs=1e-9)
        finish = finish_times_s(float(payload[g_idx]), shares[g_idx], compute_s, snr, 1e6)
        np.testing.assert_allclose(finish.numpy(), float(latency_s[g_idx]), rtol=1e-9)
    assert latency_s[1] < latency_s[0]
    # No allocation does better: equal shares finish later.
    equal = torch.full((6,), 1 / 6, dtype=torch.float64)
    assert finish_times_s(2e6, equal, compute_s, snr, 1e6).max() >= latency_s[0]
