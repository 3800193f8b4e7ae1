"""Channel callbacks in a plain LightningModule holding peft LoRA (remote fine-tuning)."""

import pytest

from lit_airlora.callbacks.over_the_air import OverTheAirAggregation
from lit_airlora.channel.fading import AWGN
from lit_airlora.channel.large_scale import FixedSNR
from tests.helpers import fit_plain


@pytest.mark.parametrize("snr_db", [0.0, 30.0])
def test_over_the_air_link_to_a_plain_module(tmp_path, snr_db):
    callback = OverTheAirAggregation(large_scale=FixedSNR(snr_db), fading=AWGN(), seed=1)
    trainer, _ = fit_plain(tmp_path, [callback])
    nmse = float(trainer.callback_metrics["remote/channel/agg_nmse"])
    # One client, unit-variance normalised values: NMSE is about 1/SNR (stated tolerance 3x).
    expected = 10 ** (-snr_db / 10)
    assert expected / 3 < nmse < expected * 3
    assert len(callback.history) == 2
