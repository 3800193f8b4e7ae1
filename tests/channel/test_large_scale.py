"""Large-scale SNR models: fixed, uniform, distance-based path loss."""

from __future__ import annotations

import math

import pytest
import torch

from lit_airlora.channel.large_scale import (
    FixedSNR,
    PathLossSNR,
    UniformSNR,
    noise_power_dbm,
    path_loss_db,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_fixed_snr_scalar_for_all_and_list_indexed_by_client_never_wrapped():
    assert FixedSNR(7.0).snr_db([0, 5], _gen()).tolist() == [7.0, 7.0]
    snr = FixedSNR([0.0, 10.0, 20.0]).snr_db([1, 0, 2], _gen())
    assert snr.dtype == torch.float64
    assert snr.tolist() == [10.0, 0.0, 20.0]
    with pytest.raises(ValueError, match=r"`snr_db` has 3 values but client 4"):
        FixedSNR([0.0, 10.0, 20.0]).snr_db([4, 0], _gen())


def test_uniform_snr_in_range_and_kept_per_client_across_rounds_and_subsets():
    model = UniformSNR(-5.0, 15.0, seed=3)
    all_clients = model.snr_db(list(range(50)), _gen(0))
    assert all_clients.min() >= -5.0 and all_clients.max() <= 15.0
    again = model.snr_db([7, 3], _gen(99))  # another round, another subset
    assert again.tolist() == [all_clients[7].item(), all_clients[3].item()]


def test_uniform_snr_per_round_changes_between_rounds_but_not_with_subset():
    model = UniformSNR(0.0, 10.0, per_round=True)
    first = model.snr_db([1, 2], _gen(0))
    assert model.snr_db([2], _gen(0)).item() == first[1].item()
    assert not torch.equal(first, model.snr_db([1, 2], _gen(1)))


def test_path_loss_snr_matches_closed_form_at_fixed_distance():
    # d = 100 m: PL = 128.1 - 37.6 = 90.5 dB; noise over 1 MHz with NF 7 dB: -174 + 60 + 7.
    model = PathLossSNR(100.0, 100.0, tx_power_dbm=23.0, bandwidth_hz=1e6, noise_figure_db=7.0)
    snr = model.snr_db([0, 1], _gen())
    expected = 23.0 - 90.5 - (-174.0 + 60.0 + 7.0)
    assert torch.allclose(snr, torch.full((2,), expected, dtype=torch.float64))


def test_path_loss_distances_uniform_over_annulus():
    # Uniform over the annulus: E[d^2] = (d_min^2 + d_max^2) / 2; 4000 clients, 3% tolerance.
    model = PathLossSNR(50.0, 500.0, tx_power_dbm=20.0, bandwidth_hz=1e6)
    d = model.distance_m(list(range(4000)), _gen())
    assert d.min() >= 50.0 and d.max() <= 500.0
    assert math.isclose(float((d**2).mean()), (50.0**2 + 500.0**2) / 2, rel_tol=0.03)


def test_path_loss_and_noise_helpers():
    assert math.isclose(float(path_loss_db(torch.tensor(1000.0))), 128.1, rel_tol=1e-6)
    assert math.isclose(noise_power_dbm(1e7, noise_figure_db=5.0), -174.0 + 70.0 + 5.0)


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: FixedSNR([]), "snr_db"),
        (lambda: FixedSNR(float("nan")), "snr_db"),
        (lambda: UniformSNR(10.0, 0.0), "high_db"),
        (lambda: PathLossSNR(0.0, 10.0, 20.0, 1e6), "min_distance_m"),
        (lambda: PathLossSNR(100.0, 10.0, 20.0, 1e6), "max_distance_m"),
        (lambda: PathLossSNR(10.0, 100.0, 20.0, -1.0), "bandwidth_hz"),
        (lambda: PathLossSNR(10.0, 100.0, 20.0, 1e6, noise_figure_db=-1.0), "noise_figure_db"),
    ],
)
def test_bad_arguments_name_the_argument(build, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        build()
