"""DDP: 2 CPU processes (gloo) give the same global adapter and head, ledger and held-out
accuracy as 1 process on the classification task."""

from pathlib import Path

import pytest
import torch

from tests.helpers import launch_script

SCRIPT = Path(__file__).with_name("ddp_classification_run.py")


def _run(tmp_path, model_dir, devices):
    launch_script(SCRIPT, tmp_path, model_dir, devices)
    return torch.load(tmp_path / f"result_{devices}.pt", weights_only=True)


@pytest.mark.slow
def test_classification_two_ranks_match_one_rank(tmp_path, tiny_llama_dir):
    one = _run(tmp_path, tiny_llama_dir, 1)
    two = _run(tmp_path, tiny_llama_dir, 2)
    assert "score.weight" in one["global_adapter"]
    for name, value in one["global_adapter"].items():
        torch.testing.assert_close(two["global_adapter"][name], value, rtol=1e-4, atol=1e-6)
    assert two["bits"] == one["bits"]
    assert two["history"] == pytest.approx(one["history"], abs=1e-6)
