"""The SOFT, SOFT + TSFA and top-k YAMLs: their callbacks build from the config."""

from __future__ import annotations

import pytest

from lit_airlora.callbacks.digital_link import DigitalUplink
from lit_airlora.callbacks.soft import SOFT
from lit_airlora.callbacks.sparsify import Sparsify
from lit_airlora.callbacks.tsfa import TSFA
from lit_airlora.compression.topk import TopK
from tests.config_helpers import composed
from tests.config_helpers import config_callbacks as _callbacks


@pytest.mark.parametrize("name", ["soft.yaml", "soft_tsfa.yaml", "topk.yaml"])
def test_model_and_data_match_the_quickstart(name):
    config, quickstart = composed(name), composed("quickstart.yaml")
    assert config["model"] == quickstart["model"] and config["data"] == quickstart["data"]


def test_soft_config_builds():
    (soft,) = _callbacks("soft.yaml")
    assert isinstance(soft, SOFT) and soft.rho == 0.6 and soft.lambda_orth == 0.01


def test_soft_tsfa_config_builds_with_its_rank_bound():
    soft, tsfa, uplink = _callbacks("soft_tsfa.yaml")
    assert isinstance(soft, SOFT) and isinstance(tsfa, TSFA)
    assert isinstance(uplink, DigitalUplink) and uplink.multiple_access == "fdma"
    assert tsfa.rank_bound.payload_coeff == 0.01 and tsfa.schedule_clients
    assert tsfa.latency_budget_s == 0.5 and len(tsfa.rho_grid) == 10


def test_topk_config_builds():
    (sparsify,) = _callbacks("topk.yaml")
    assert isinstance(sparsify, Sparsify) and isinstance(sparsify.encoder, TopK)
    assert sparsify.rho == 0.6
