"""The SOFT, SOFT + TSFA and top-k YAMLs: their callbacks build from the config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch import Callback

from lit_airlora.callbacks.soft import SOFT
from lit_airlora.callbacks.sparsify import Sparsify
from lit_airlora.callbacks.tsfa import TSFA
from lit_airlora.compression.topk import TopK

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _config(name: str) -> dict:
    text = (CONFIGS / name).read_text()
    assert text.startswith("#") and f"lit-airlora fit --config configs/{name}" in text
    return yaml.safe_load(text)


def _callbacks(name: str) -> list[Callback]:
    parser = ArgumentParser()
    parser.add_argument("--callbacks", type=list[Callback])
    parsed = parser.parse_object({"callbacks": _config(name)["trainer"]["callbacks"]})
    return parser.instantiate_classes(parsed).callbacks


@pytest.mark.parametrize("name", ["soft.yaml", "soft_tsfa.yaml", "topk.yaml"])
def test_model_and_data_match_the_quickstart(name):
    config, quickstart = _config(name), _config("quickstart.yaml")
    assert config["model"] == quickstart["model"] and config["data"] == quickstart["data"]


def test_soft_config_builds():
    (soft,) = _callbacks("soft.yaml")
    assert isinstance(soft, SOFT) and soft.rho == 0.6 and soft.lambda_orth == 0.01


def test_soft_tsfa_config_builds_with_its_rank_bound():
    soft, tsfa = _callbacks("soft_tsfa.yaml")
    assert isinstance(soft, SOFT) and isinstance(tsfa, TSFA)
    assert tsfa.rank_bound.payload_coeff == 0.01 and tsfa.schedule_clients
    assert tsfa.latency_budget_s == 0.5 and len(tsfa.rho_grid) == 10


def test_topk_config_builds():
    (sparsify,) = _callbacks("topk.yaml")
    assert isinstance(sparsify, Sparsify) and isinstance(sparsify.encoder, TopK)
    assert sparsify.rho == 0.6
