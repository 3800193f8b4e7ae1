"""The classification head crosses the shipped channels with the adapter: over-the-air (AirComp
SISO) and digital (quantised, PHY abstraction) rounds run and send the head whole."""

import pytest

from tests.config_helpers import config_callbacks
from tests.tasks.classification_helpers import classification_fit


@pytest.mark.parametrize("config", ["aircomp_siso.yaml", "digital_fedavg.yaml"])
def test_head_crosses_the_channel(tmp_path, tiny_llama_dir, tokenizer, config):
    trainer, module = classification_fit(
        tmp_path, tiny_llama_dir, tokenizer, max_epochs=1, callbacks=config_callbacks(config)
    )
    metrics = trainer.logged_metrics
    assert 0 < float(metrics["channel/agg_nmse"]) < 1  # noisy, yet an estimate of the head too
    assert float(metrics["comm/uplink_bits_per_client"]) > 3 * 64  # the head's values at least
    assert module.global_adapter["score.weight"].isfinite().all()
