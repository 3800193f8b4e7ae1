"""DigitalUplink through the federated module (tiny fit) and from its YAML config."""

from __future__ import annotations

import pytest
import torch

from lit_airlora.callbacks.digital_link import DigitalUplink
from lit_airlora.channel.abstraction import AbstractionLink
from lit_airlora.channel.fading import RayleighBlock
from lit_airlora.channel.large_scale import PathLossSNR, UniformSNR
from lit_airlora.channel.quantize import UniformQuantizer
from lit_airlora.federated.stages import StageCallback
from tests.config_helpers import composed, config_callbacks


def test_end_to_end_fit_over_digital_links(tmp_path, tiny_llama_dir, tokenizer):
    from tests.helpers import tiny_fit

    callback = DigitalUplink(
        AbstractionLink(bandwidth_hz=1e6, max_retransmissions=1),
        UniformQuantizer(8),
        large_scale=UniformSNR(0.0, 20.0),
        small_scale=RayleighBlock(),
    )
    probe = SNRProbe(callback)
    trainer, module = tiny_fit(tmp_path, tiny_llama_dir, tokenizer, callbacks=[probe, callback])
    metrics = trainer.logged_metrics
    assert float(metrics["comm/bits_offered"]) > 0
    assert 0 < float(metrics["comm/bits_delivered"]) <= float(metrics["comm/bits_offered"])
    assert float(metrics["comm/airtime_s"]) > 0 and float(metrics["comm/energy_j"]) > 0
    assert float(metrics["comm/uplink_bits"]) == float(metrics["comm/bits_offered"])
    assert 0 <= float(metrics["channel/agg_nmse"]) < 1
    assert all(torch.isfinite(t).all() for t in module.global_adapter.values())
    # SNRs predicted from the round plan at round start (what rank policies read) are the ones
    # the link then used.
    last = trainer.current_epoch - 1
    snr_db = callback.round_snr_db(last)
    assert float(snr_db.mean()) == pytest.approx(float(metrics["channel/snr_db_mean"]))
    assert len(probe.predicted) == trainer.current_epoch
    for predicted, used in zip(probe.predicted, probe.used, strict=True):
        assert predicted is not None and torch.equal(predicted, used)


class SNRProbe(StageCallback):
    """Asks the link for the round's SNRs at round start (from the plan) and at round end."""

    def __init__(self, link):
        self.link, self.predicted, self.used = link, [], []

    def on_round_start(self, trainer, pl_module, round_idx):
        self.predicted.append(self.link.round_snr_db(round_idx, pl_module.round_plan))

    def on_round_end(self, trainer, pl_module, ctx):
        self.used.append(self.link.round_snr_db(ctx.round_idx))


def test_config_builds_on_the_quickstart_federation():
    config, quickstart = composed("digital_fedavg.yaml"), composed("quickstart.yaml")
    assert config["model"] == quickstart["model"] and config["data"] == quickstart["data"]
    (callback,) = config_callbacks("digital_fedavg.yaml")
    assert isinstance(callback, DigitalUplink) and isinstance(callback.link, AbstractionLink)
    assert callback.link.mcs_index is None and callback.link.max_retransmissions == 1
    assert isinstance(callback.large_scale, PathLossSNR)
    assert isinstance(callback.small_scale, RayleighBlock)
    assert callback.quantizer.bits_per_value == 8
