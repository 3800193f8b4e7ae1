"""AbstractionLink: argument checks, link adaptation, HARQ statistics, costs, scale."""

from __future__ import annotations

import time

import pytest
import torch

from lit_airlora.channel.abstraction import AbstractionLink, harq_attempts
from lit_airlora.channel.costs import slot_duration_s


@pytest.fixture(scope="module")
def adaptive() -> AbstractionLink:
    link = AbstractionLink(max_retransmissions=1)
    link.setup("cpu")
    return link


def _awgn(k: int) -> torch.Tensor:
    return torch.ones(k, 1, 1, 1, dtype=torch.complex64)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mcs_index": 29}, r"valid indices are 0\.\.28"),
        ({"mcs_index": 28, "mcs_table": 2}, r"valid indices are 0\.\.27"),
        ({"mcs_table": 3}, "mcs_table"),
        ({"target_bler": 1.0}, "target_bler"),
        ({"bandwidth_hz": -1.0}, "bandwidth_hz"),
        ({"bandwidth_hz": 100e3}, "holds no PRB"),
        ({"tx_power_w": 0.0}, "tx_power_w"),
        ({"num_data_symbols": 15}, "num_data_symbols"),
    ],
)
def test_invalid_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AbstractionLink(**kwargs)


def test_mcs_without_bler_table_is_refused_at_setup():
    with pytest.raises(ValueError, match=r"no BLER table .* use 3\.\.27"):
        AbstractionLink(mcs_index=0).setup("cpu")


def test_link_adaptation_rises_with_snr_and_meets_the_target(adaptive):
    snr_db = torch.tensor([0.0, 5.0, 10.0, 15.0, 20.0, 25.0])
    report = adaptive.transmit([10_000] * 6, snr_db, _awgn(6), torch.Generator())
    mcs, tbler = report.extras["mcs_index"], report.extras["tbler"]
    assert (mcs.diff() >= 0).all() and mcs[-1] > mcs[0]
    assert (tbler <= adaptive.target_bler + 1e-6).all()
    assert (report.extras["rate_bps"].diff() >= 0).all()
    rate = report.extras["tb_bits"].double() / slot_duration_s(30e3)
    torch.testing.assert_close(report.extras["rate_bps"], rate)


def test_fixed_mcs_bler_falls_with_snr():
    link = AbstractionLink(mcs_index=10)
    report = link.transmit(
        [1000] * 4, torch.tensor([2.0, 4.0, 6.0, 8.0]), _awgn(4), torch.Generator()
    )
    tbler = report.extras["tbler"]
    assert (tbler.diff() <= 0).all() and tbler[0] > 0.9 and tbler[-1] < 0.01
    assert (report.extras["mcs_index"] == 10).all()


def test_costs_follow_the_slots(adaptive):
    report = adaptive.transmit([500_000], torch.tensor([12.0]), _awgn(1), torch.Generator())
    blocks = len(report.block_ok[0])
    assert blocks == -(-500_000 // int(report.extras["tb_bits"][0]))
    slots = int(report.block_transmissions[0])
    assert slots == blocks + int(report.retransmissions[0])
    assert float(report.airtime_s[0]) == pytest.approx(slots * slot_duration_s(30e3))
    assert float(report.energy_j[0]) == pytest.approx(0.2 * float(report.airtime_s[0]))
    assert report.received_bits == [None]


def test_very_low_snr_loses_every_block():
    link = AbstractionLink(mcs_index=20, max_retransmissions=2)
    report = link.transmit([100_000], torch.tensor([-5.0]), _awgn(1), torch.Generator())
    blocks = len(report.block_ok[0])
    assert report.blocks_dropped().tolist() == [blocks] and report.bits_delivered.tolist() == [0.0]
    assert report.block_errors.tolist() == [3 * blocks]


def test_harq_statistics_match_geometric_law():
    # 40000 blocks: per-block Bernoulli / geometric means have standard deviation < 0.005;
    # tolerance 0.02 (> 4 sigma).
    bler, retx = 0.3, 2
    attempts, ok = harq_attempts(40_000, bler, retx, torch.Generator().manual_seed(0))
    assert float((~ok).float().mean()) == pytest.approx(bler ** (retx + 1), abs=0.02)
    expected_attempts = (1 - bler ** (retx + 1)) / (1 - bler)
    assert float(attempts.float().mean()) == pytest.approx(expected_attempts, abs=0.02)
    assert int(attempts.min()) >= 1 and int(attempts.max()) <= retx + 1


def test_same_generator_seed_same_outcome(adaptive):
    def run() -> list:
        generator = torch.Generator().manual_seed(3)
        return adaptive.transmit([200_000], torch.tensor([6.0]), _awgn(1), generator).block_ok

    assert torch.equal(run()[0], run()[0])


def test_a_generator_per_client_isolates_their_draws():
    # Client 1's blocks depend on its own generator only, not on who else is in the call.
    link = AbstractionLink(mcs_index=10, max_retransmissions=1)  # TBLER about 0.1 at 3 dB

    def client_one(payloads, snr_db) -> tuple[torch.Tensor, int]:
        generators = [torch.Generator().manual_seed(10 + k) for k in range(len(payloads))]
        report = link.transmit(payloads, torch.tensor(snr_db), _awgn(len(payloads)), generators)
        return report.block_ok[1], int(report.retransmissions[1])

    (together, retx), (other, other_retx) = (
        client_one([300_000, 100_000], [2.0, 3.0]),
        client_one([10_000, 100_000], [9.0, 3.0]),
    )
    assert retx > 0 and retx == other_retx and torch.equal(together, other)


def test_frequency_selective_mimo_uses_effective_sinr(adaptive):
    h = torch.randn(2, 2, 2, 16, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    report = adaptive.transmit([50_000, 50_000], torch.tensor([15.0, 15.0]), h, torch.Generator())
    assert report.extras["sinr_eff_db"].isfinite().all()
    # Two streams double the resources of one slot: larger TBs than one stream at equal MCS.
    single = adaptive.transport_block_bits(report.extras["mcs_index"].to(torch.int32), 1)
    assert (report.extras["tb_bits"] > single.cpu()).all()


def test_model_scale_payload_is_fast(adaptive):
    # 4 clients x 10M values x 8 bits: thousands of TBs each, vectorised.
    adaptive.transmit([1000], torch.tensor([10.0]), _awgn(1), torch.Generator())  # warm-up
    start = time.perf_counter()
    report = adaptive.transmit(
        [80_000_000] * 4, torch.tensor([5.0, 10.0, 15.0, 20.0]), _awgn(4), torch.Generator()
    )
    assert time.perf_counter() - start < 3.0
    assert (report.delivered_fraction() > 0.5).all()
    assert min(len(ok) for ok in report.block_ok) > 1000
