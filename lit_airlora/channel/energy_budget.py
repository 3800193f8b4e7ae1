"""A fixed energy budget per round for over-the-air aggregation (AirFL-LoRA's rank trade-off).

With a budget of ``N`` OFDM symbols at full power, a payload of ``D`` reals on ``S`` streams and
``M`` subcarriers gets ``2 S M N / D`` times the energy per value of a payload that fills the
budget exactly: a longer payload (a larger LoRA rank) leaves less energy per value and a larger
aggregation error, a shorter one can spend the spare energy (repetition, power boosting). The
effect on the estimate is that of an SNR shifted by ``10 log10(2 S M N / D)`` dB, which is how the
callback applies it (``RoundChannel.energy_shift_db``, on top of the full-power SNR it records);
the rank policy's MSE models apply the same shift for the payload of the ranks they try.
"""

from __future__ import annotations

from lit_airlora.channel.units import lin_to_db


def energy_shift_db(
    budget_symbols: int, num_streams: int, num_subcarriers: int, reals: int
) -> float:
    """``10 log10(2 S M N / D)``: the SNR change of a ``D``-real payload under the budget."""
    if reals <= 0:
        return 0.0
    return float(lin_to_db(2.0 * num_streams * num_subcarriers * budget_symbols / reals))
