"""dB conversions through Sionna: closed forms, and the input's precision and device kept."""

import math

import pytest
import torch

from lit_airlora.channel.units import db_to_amplitude, db_to_lin, lin_to_db


@pytest.mark.parametrize("x_db", [-30.0, -3.0, 0.0, 7.5, 40.0])
def test_conversions_match_the_closed_forms(x_db):
    assert float(db_to_lin(x_db)) == pytest.approx(10 ** (x_db / 10), rel=1e-14)
    assert float(db_to_amplitude(x_db)) == pytest.approx(10 ** (x_db / 20), rel=1e-14)
    assert float(lin_to_db(10 ** (x_db / 10))) == pytest.approx(x_db, abs=1e-12)


def test_precision_follows_the_input():
    assert db_to_lin(3.0).dtype == torch.float64  # Python numbers: double
    assert db_to_lin(torch.tensor([3.0])).dtype == torch.float32
    assert lin_to_db(torch.tensor([2.0], dtype=torch.float64)).dtype == torch.float64
    x = torch.tensor([1.0, 10.0, 100.0])
    torch.testing.assert_close(lin_to_db(x), torch.tensor([0.0, 10.0, 20.0]))
    assert math.isinf(float(lin_to_db(0.0)))
