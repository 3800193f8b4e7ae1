"""DDP: all clients and ranks draw the same directions from the round seed, so a 2-process CPU
(gloo) pAirZero run ends with the same parameters, epsilon and bits as the 1-process run."""

import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import launch_script

SCRIPT = Path(__file__).with_name("ddp_zo_run.py")


@pytest.mark.slow
def test_two_ranks_match_one_rank(tmp_path, tiny_llama_dir):
    sys.path.insert(0, str(SCRIPT.parent))
    from ddp_zo_run import run

    one = run(tmp_path / "one", tiny_llama_dir, 1)
    launch_script(SCRIPT, tmp_path / "two", tiny_llama_dir, 2)
    two = torch.load(tmp_path / "two" / "result.pt", weights_only=True)
    for name, value in one["global_adapter"].items():
        torch.testing.assert_close(two["global_adapter"][name], value, rtol=1e-5, atol=1e-7)
    assert two["epsilon"] == pytest.approx(one["epsilon"], rel=1e-9)
    assert two["bits"] == one["bits"]
    assert any(v.abs().sum() > 0 for n, v in one["global_adapter"].items() if "lora_B" in n)
