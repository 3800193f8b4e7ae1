"""DDP with AirLLM's agent in the loop: 2 CPU ranks choose the same ranks and reach the same
adapter as 1 rank (one subprocess launch for the 2-rank run, the 1-rank run in process)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.ddp_run import SCRIPT_PATH, result, run


@pytest.mark.slow
def test_two_ranks_match_one_rank_with_the_agent(tmp_path, tiny_llama_dir):
    env = {**os.environ, "PYTHONPATH": str(SCRIPT_PATH.parents[1])}
    command = [sys.executable, str(SCRIPT_PATH), str(tmp_path / "two"), tiny_llama_dir, "2"]
    subprocess.run([*command, "agent"], check=True, env=env, timeout=600, capture_output=True)
    two = torch.load(tmp_path / "two" / "result_2.pt", weights_only=True)
    one = result(*run(str(tmp_path / "one"), tiny_llama_dir, 1, agent=True))
    assert two["rank_history"] == one["rank_history"]
    assert len(set(map(tuple, one["rank_history"].values()))) > 1  # the agent moved ranks
    for name, value in one["global_adapter"].items():
        torch.testing.assert_close(two["global_adapter"][name], value, rtol=1e-4, atol=1e-6)
    assert two["bits"] == one["bits"]
    assert Path(tmp_path / "two" / "result_2.pt").exists()
