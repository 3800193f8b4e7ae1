"""DDP on 2, 3 and 4 CPU (gloo) processes gives the same global adapter as one process, for
every channel and rank policy (AirLLM's agent included), with even and odd clients per round
(uneven shards pad with idle steps).

Tolerance: the global adapters must be bit-equal. Local training of a client is the same
computation on any rank (one thread per process; LoRA dropout seeded per round and client),
and every sum over clients is accumulated in float64 before the all-reduce, so how clients are
shared out over ranks moves a sum by ~1e-16 relative, below float32 resolution once cast back.
Validation perplexity sums per-token losses over ranks in float32 (torchmetrics): 1e-5. The
classification case has an odd number of validation samples, so on 2 ranks one shard is padded
with an ignored sample (label -100): accuracy and F1 are counts, equal; the loss 1e-6.
"""

from pathlib import Path

import pytest
import torch

from tests.helpers import launch_script

SCRIPT = Path(__file__).with_name("ddp_run.py")

#: Cases per world size, ``<channel>:<clients per round>`` (6 clients in the federation).
MATRIX = {
    2: [
        *("ideal:4", "siso:4", "mimo:3", "digital:5", "soft:4", "policy:4", "dropout:3"),
        *("agent:4", "classify:3"),
    ],
    3: ["ideal:4", "siso:3", "mimo:5", "digital:4"],
    4: ["ideal:3", "siso:5", "mimo:4", "digital:6"],
}
#: Seconds a launch may take before the test fails (a hang must fail, not block CI).
TIMEOUT_S = 420


def _launch(out_dir: Path, model_dir: str, devices: int, cases: list[str]) -> None:
    launch_script(SCRIPT, out_dir, model_dir, devices, *cases, timeout_s=TIMEOUT_S)


def _result(out_dir: Path, case: str, devices: int) -> dict:
    return torch.load(out_dir / f"{case.replace(':', '_')}_{devices}.pt", weights_only=True)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_llama_dir) -> Path:
    out_dir = tmp_path_factory.mktemp("ddp")
    cases = sorted({case for cases in MATRIX.values() for case in cases})
    _launch(out_dir, tiny_llama_dir, 1, cases)
    return out_dir


@pytest.mark.slow
@pytest.mark.parametrize("devices", sorted(MATRIX))
def test_ranks_match_one_process(one_process, tiny_llama_dir, devices):
    _launch(one_process, tiny_llama_dir, devices, MATRIX[devices])
    for case in MATRIX[devices]:
        one, many = _result(one_process, case, 1), _result(one_process, case, devices)
        for name, value in one["global_adapter"].items():
            assert torch.equal(many["global_adapter"][name], value), (case, name)
        assert many["bits"] == one["bits"] and many["ranks"] == one["ranks"], case
        assert many["train_loss"] == pytest.approx(one["train_loss"], rel=1e-6, nan_ok=True), case
        assert many["history"] == pytest.approx(one["history"], rel=1e-5), case
        assert many["rank_history"] == one["rank_history"], case
        # Every rank runs the largest shard's steps: ceil(C / W) clients x 1 local step.
        channel, clients_per_round = case.split(":")
        rounds = 5 if channel == "agent" else 2
        assert many["global_step"] == rounds * -(-int(clients_per_round) // devices), case
        if channel == "policy":  # the rank policy moved the ranks within its budget
            assert sum(many["ranks"].values()) == 10
        if channel == "agent":  # AirLLM's agent moved the ranks (some rounds are skipped)
            assert len(set(map(tuple, many["rank_history"].values()))) > 1
        if channel == "classify":
            _check_classification_metrics(one, many, devices)


def _check_classification_metrics(one: dict, many: dict, devices: int) -> None:
    """Validation padded to equal shards (label -100) scores as one process: accuracy, macro
    and per-class F1 are counts summed over ranks (exact); the loss a float32 mean (1e-6)."""
    assert one["num_val"] % devices != 0  # one shard carries a padding sample
    assert (
        set(many["val_metrics"]) == set(one["val_metrics"]) and "val/f1_macro" in one["val_metrics"]
    )
    for name, value in one["val_metrics"].items():
        assert many["val_metrics"][name] == pytest.approx(value, rel=1e-6, abs=1e-7), name
