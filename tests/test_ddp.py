"""DDP: a 2-process CPU (gloo) run gives the same global adapter as the 1-process run, with a
rank policy changing ranks between rounds."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("ddp_run.py")


def _run(tmp_path, model_dir, devices):
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[1])}
    subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), model_dir, str(devices)],
        check=True,
        env=env,
        timeout=600,
        capture_output=True,
    )
    return torch.load(tmp_path / f"result_{devices}.pt", weights_only=True)


@pytest.mark.slow
def test_two_ranks_match_one_rank(tmp_path, tiny_llama_dir):
    one = _run(tmp_path, tiny_llama_dir, 1)
    two = _run(tmp_path, tiny_llama_dir, 2)
    for name, value in one["global_adapter"].items():
        torch.testing.assert_close(two["global_adapter"][name], value, rtol=1e-4, atol=1e-6)
    assert two["bits"] == one["bits"]
    assert two["ranks"] == one["ranks"] and sum(one["ranks"].values()) == 10
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
