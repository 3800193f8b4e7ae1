"""Uncoded BER: closed forms against textbook values and against Sionna Monte Carlo.

Monte Carlo: 2^20 bits through Sionna's Mapper and hard-decision (max-log, i.e. nearest
neighbour) Demapper, complex AWGN of variance ``N_0 = 10^(-snr_db / 10)`` drawn from a seeded
generator, and for Rayleigh ``h ~ CN(0, 1)`` per symbol with LMMSE (= zero-forcing) equalisation.
Tolerance: 10 % relative at BER >= 2e-3, i.e. >= 2000 expected errors (relative standard
deviation <= 2.3 %, so > 4 sigma).
"""

from __future__ import annotations

import math

import pytest
import torch

from lit_airlora.channel.equalization import lmmse_equalize
from lit_airlora.channel.modulation_theory import ber_awgn, ber_rayleigh, qfunc

NUM_BITS = 2**20
RELATIVE_TOLERANCE = 0.10
CONSTELLATIONS = {1: "pam", 2: "qam", 4: "qam"}


def _simulate(num_bits_per_symbol: int, snr_db: float, rayleigh: bool, seed: int) -> float:
    from sionna.phy.mapping import Demapper, Mapper

    kind = CONSTELLATIONS[num_bits_per_symbol]
    mapper = Mapper(kind, num_bits_per_symbol, device="cpu")
    demapper = Demapper("maxlog", kind, num_bits_per_symbol, hard_out=True, device="cpu")
    generator = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2, (NUM_BITS,), generator=generator).float()
    x = mapper(bits)  # (NUM_BITS / m,) complex
    no = 10 ** (-snr_db / 10)
    noise = math.sqrt(no) * torch.randn(x.shape, dtype=torch.complex64, generator=generator)
    if rayleigh:
        h = torch.randn(x.shape, dtype=torch.complex64, generator=generator)
        x_hat, no_eff = lmmse_equalize((h * x + noise)[:, None], h[:, None, None], no)
        bits_hat = demapper(x_hat[:, 0], no_eff[:, 0])
    else:
        bits_hat = demapper(x + noise, torch.tensor(no))
    return float((bits_hat != bits).float().mean())


def test_closed_forms_match_textbook_values():
    assert float(qfunc(torch.tensor(0.0))) == pytest.approx(0.5)
    # BPSK at Eb/N0 = 9.59 dB gives 1e-5; QPSK has the same BER per Eb/N0 (Es = 2 Eb).
    assert float(ber_awgn(1, 9.59)) == pytest.approx(1e-5, rel=0.02)
    assert float(ber_awgn(2, 9.59 + 10 * math.log10(2))) == pytest.approx(1e-5, rel=0.02)
    # Rayleigh BPSK at high SNR ~ 1 / (4 snr).
    assert float(ber_rayleigh(1, 40.0)) == pytest.approx(1 / (4 * 1e4), rel=1e-3)
    # Gray 16-QAM at Eb/N0 = 10 dB (Es = 4 Eb): 3/8 erfc(sqrt(0.4 * 10)) = 1.754e-3.
    assert float(ber_awgn(4, 10.0 + 10 * math.log10(4))) == pytest.approx(1.754e-3, rel=0.01)


def test_ber_falls_with_snr_and_fading_hurts():
    snr_db = torch.tensor([0.0, 5.0, 10.0])
    for m in (1, 2, 4):
        awgn, rayleigh = ber_awgn(m, snr_db), ber_rayleigh(m, snr_db)
        assert (awgn.diff() < 0).all() and (rayleigh.diff() < 0).all()
        assert (rayleigh > awgn).all()


def test_unknown_modulation_is_refused():
    with pytest.raises(ValueError, match="num_bits_per_symbol"):
        ber_awgn(6, 10.0)


@pytest.mark.parametrize(
    "num_bits_per_symbol,snr_db,rayleigh",
    [
        (1, 6.0, False),
        (2, 8.0, False),
        (4, 14.0, False),
        (1, 10.0, True),
        (2, 12.0, True),
        (4, 18.0, True),
    ],
)
def test_monte_carlo_matches_closed_form(num_bits_per_symbol, snr_db, rayleigh):
    theory = ber_rayleigh if rayleigh else ber_awgn
    expected = float(theory(num_bits_per_symbol, snr_db))
    assert expected >= 2e-3
    measured = _simulate(num_bits_per_symbol, snr_db, rayleigh, seed=num_bits_per_symbol)
    assert measured == pytest.approx(expected, rel=RELATIVE_TOLERANCE)
