"""DigitalUplink through the federated module (tiny fit) and from its YAML config."""

from __future__ import annotations

import pytest
import torch

from lit_airlora.callbacks.digital_link import DigitalUplink
from lit_airlora.channel.abstraction import AbstractionLink
from lit_airlora.channel.fading import RayleighBlock
from lit_airlora.channel.large_scale import PathLossSNR, UniformSNR
from lit_airlora.channel.quantize import UniformQuantizer
from tests.config_helpers import composed, config_callbacks


def test_end_to_end_fit_over_digital_links(tmp_path, tiny_llama_dir, tokenizer):
    from tests.helpers import tiny_fit

    callback = DigitalUplink(
        AbstractionLink(bandwidth_hz=1e6, max_retransmissions=1),
        UniformQuantizer(8),
        large_scale=UniformSNR(0.0, 20.0),
        small_scale=RayleighBlock(),
    )
    trainer, module = tiny_fit(tmp_path, tiny_llama_dir, tokenizer, callbacks=[callback])
    metrics = trainer.logged_metrics
    assert float(metrics["comm/bits_offered"]) > 0
    assert 0 < float(metrics["comm/bits_delivered"]) <= float(metrics["comm/bits_offered"])
    assert float(metrics["comm/airtime_s"]) > 0 and float(metrics["comm/energy_j"]) > 0
    assert float(metrics["comm/uplink_bits"]) == float(metrics["comm/bits_offered"])
    assert 0 <= float(metrics["channel/agg_nmse"]) < 1
    assert all(torch.isfinite(t).all() for t in module.global_adapter.values())
    # The module draws round seeds and clients as the callback predicts: SNRs of the last round
    # match what the link used, and later rounds are known ahead (for rank policies).
    last = trainer.current_epoch - 1
    snr_db = callback.round_snr_db(last)
    assert float(snr_db.mean()) == pytest.approx(float(metrics["channel/snr_db_mean"]))
    schedule = trainer.datamodule.schedule
    assert callback.round_snr_db(last + 5).shape == (len(schedule.clients(last + 5)),)


def test_config_builds_on_the_quickstart_federation():
    config, quickstart = composed("digital_fedavg.yaml"), composed("quickstart.yaml")
    assert config["model"] == quickstart["model"] and config["data"] == quickstart["data"]
    (callback,) = config_callbacks("digital_fedavg.yaml")
    assert isinstance(callback, DigitalUplink) and isinstance(callback.link, AbstractionLink)
    assert callback.link.mcs_index is None and callback.link.max_retransmissions == 1
    assert isinstance(callback.large_scale, PathLossSNR)
    assert isinstance(callback.small_scale, RayleighBlock)
    assert callback.quantizer.bits_per_value == 8
