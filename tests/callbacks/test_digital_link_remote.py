"""DigitalUplink in a plain LightningModule holding peft LoRA (remote fine-tuning)."""

from __future__ import annotations

import pytest
import torch

from lit_airlora.callbacks.digital_link import DigitalUplink
from lit_airlora.channel.abstraction import AbstractionLink
from lit_airlora.channel.fading import AWGN, RayleighBlock
from lit_airlora.channel.large_scale import FixedSNR, UniformSNR
from lit_airlora.channel.quantize import UniformQuantizer
from lit_airlora.lora.layers import adapter_tensors, find_lora_layers
from tests.helpers import fit_plain


def test_high_snr_delivers_the_quantised_adapter(tmp_path):
    # Shadow mode keeps the trained adapter in the model and validates the received one, so the
    # two can be compared: at 40 dB every block arrives and only quantisation error remains.
    quantizer = UniformQuantizer(8)
    link = AbstractionLink(bandwidth_hz=1e6)
    callback = DigitalUplink(
        link, quantizer, UniformSNR(35.0, 45.0, per_round=True), AWGN(), remote_mode="shadow"
    )
    trainer, module = fit_plain(tmp_path, [callback])
    trained = adapter_tensors(find_lora_layers(module))
    received = module.seen_in_validation[-1]
    for name, value in trained.items():
        expected = quantizer.dequantize(quantizer.quantize(value.reshape(-1)))
        torch.testing.assert_close(received[name].reshape(-1), expected)
    metrics = trainer.callback_metrics
    assert float(metrics["remote/comm/blocks_dropped"]) == 0
    assert float(metrics["remote/comm/bits_delivered"]) == float(
        metrics["remote/comm/bits_offered"]
    )
    # Only quantisation error is left: at most max|x| / 255 per value at 8 bits, a tiny NMSE.
    assert 0 < float(metrics["remote/channel/agg_nmse"]) < 1e-3
    # The SNR reported for the last epoch is the one the link used (one client, id 0).
    snr_db = callback.round_snr_db(trainer.current_epoch - 1)
    assert snr_db.shape == (1,)
    assert float(snr_db[0]) == pytest.approx(float(metrics["remote/channel/snr_db_mean"]))


def test_very_low_snr_loses_blocks_counts_them_and_stays_finite(tmp_path):
    # Without the outage rule the client transmits below MCS 0 and its blocks fail on the air.
    link = AbstractionLink(bandwidth_hz=1e6, max_retransmissions=1, outage=False)
    callback = DigitalUplink(link, large_scale=FixedSNR(-10.0), small_scale=RayleighBlock())
    trainer, module = fit_plain(tmp_path, [callback], max_epochs=1)
    metrics = trainer.callback_metrics
    assert float(metrics["remote/comm/blocks_dropped"]) >= 1
    assert float(metrics["remote/comm/bits_delivered"]) < float(metrics["remote/comm/bits_offered"])
    assert float(metrics["remote/channel/bler"]) > 0.5
    adapter = adapter_tensors(find_lora_layers(module))  # replace mode: the received adapter
    assert all(torch.isfinite(t).all() for t in adapter.values())


def test_remote_mode_is_checked():
    with pytest.raises(ValueError, match="remote_mode"):
        DigitalUplink(AbstractionLink(), remote_mode="mirror")


def test_very_low_snr_under_the_outage_rule_sends_nothing_and_keeps_the_adapter(tmp_path):
    # With the outage rule (the default) the client below MCS 0 stays silent: nothing is on the
    # air, so no block fails, every offered bit is dropped and the trained adapter is kept.
    link = AbstractionLink(bandwidth_hz=1e6, max_retransmissions=1)
    callback = DigitalUplink(link, large_scale=FixedSNR(-10.0), small_scale=RayleighBlock())
    trainer, module = fit_plain(tmp_path, [callback], max_epochs=1)
    metrics = trainer.callback_metrics
    assert float(metrics["remote/comm/bits_delivered"]) == 0
    assert float(metrics["remote/comm/blocks_dropped"]) >= 1
    assert float(metrics["remote/channel/bler"]) == 0
    adapter = adapter_tensors(find_lora_layers(module))
    # peft starts B at zero: a non-zero B is the trained one, not a zeroed or reset adapter.
    assert all(bool(t.abs().sum() > 0) for n, t in adapter.items() if n.endswith("lora_B"))
