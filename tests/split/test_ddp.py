"""DDP: SplitLLM's two user-edge streams on 2 CPU ranks (gloo) give the 1-rank result: the
cloud adapter is stepped on gradients summed over ranks, user/edge adapters averaged across."""

from pathlib import Path

import pytest
import torch

from tests.helpers import launch_script

SCRIPT = Path(__file__).with_name("ddp_split_run.py")


def _run(tmp_path, model_dir, devices):
    launch_script(SCRIPT, tmp_path, model_dir, devices)
    return torch.load(tmp_path / f"result_{devices}.pt", weights_only=True)


@pytest.mark.slow
def test_two_ranks_match_one_rank(tmp_path, tiny_llama4_dir, tokenizer):
    from tests.split.helpers import split_fit

    _, module = split_fit(tmp_path / "one", tiny_llama4_dir, tokenizer, enable_checkpointing=False)
    two = _run(tmp_path / "two", tiny_llama4_dir, 2)
    for name, value in module.global_adapter.items():
        torch.testing.assert_close(two["global_adapter"][name], value, rtol=1e-4, atol=1e-6)
    assert two["traffic_bits"] == module.traffic.total_bits
    assert two["uplink_bits"] == module.ledger.total_bits
