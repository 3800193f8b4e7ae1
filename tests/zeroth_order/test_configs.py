"""The pAirZero YAMLs (built by tests/test_configs.py): what each composes to."""

from __future__ import annotations

import pytest
import torch

from lit_airlora.callbacks.scalar_over_the_air import (
    AnalogScalarAggregation,
    SignScalarAggregation,
)
from tests.config_helpers import build_cli, composed, config_callbacks


@pytest.mark.parametrize(
    ("name", "channel"),
    [
        ("pairzero_analog.yaml", AnalogScalarAggregation),
        ("pairzero_sign.yaml", SignScalarAggregation),
        ("pairzero_perfect.yaml", None),
    ],
)
def test_zeroth_order_configs(name, channel):
    zo = composed(name)["model"]["init_args"]["zeroth_order"]["init_args"]
    assert zo["perturbation_scale"] == 1e-3 and zo["clip"] == 100.0  # the paper's mu, gamma
    callbacks = config_callbacks(name)
    if channel is None:
        assert not callbacks
    else:
        (callback,) = callbacks
        assert isinstance(callback, channel)
        assert (callback.privacy.epsilon, callback.privacy.delta) == (5.0, 0.01)


@pytest.mark.parametrize("name", ["pairzero_fo_adam.yaml", "pairzero_fo_sgd.yaml"])
def test_first_order_baselines_run_the_same_federation(name):
    fo, zo = composed(name), composed("pairzero_analog.yaml")
    assert fo["model"]["init_args"].get("zeroth_order") is None
    assert fo["data"] == zo["data"] and fo["trainer"]["max_epochs"] == zo["trainer"]["max_epochs"]
    assert fo["data"]["init_args"]["clients_per_round"] == 5


def test_fo_sgd_baseline_steps_with_plain_sgd(tiny_llama_dir, tmp_path):
    cli = build_cli("pairzero_fo_sgd.yaml", tiny_llama_dir, tmp_path)
    optimizer = cli.model.configure_optimizers()
    assert type(optimizer) is torch.optim.SGD
    (group,) = optimizer.param_groups
    assert group["lr"] == 0.05 and group["momentum"] == 0  # one stateless step per round
    assert cli.model.zeroth_order is None and cli.trainer.logger.name == "pairzero_fo_sgd"
