"""AirLLM's policies in a fit: infeasible rounds train and send nothing; resume with the agent."""

from __future__ import annotations

import pytest
import torch

from lit_airlora.callbacks.rank_policy import RankPolicyCallback
from lit_airlora.channel.costs import shannon_rate_bps
from lit_airlora.channel.large_scale import UniformSNR
from lit_airlora.federated.stages import StageCallback
from lit_airlora.lora.layers import adapter_tensors
from lit_airlora.policy.agent_settings import DDIMSettings, PPOSettings
from lit_airlora.policy.airllm import AirLLMPolicy
from lit_airlora.policy.airllm_env import AirLLMEnvironment
from lit_airlora.policy.random_feasible import RandomFeasiblePolicy
from tests.helpers import tiny_fit

#: The tiny Llama's q/v adapters cost 14,464 bits per rank; at 10 kHz rank 1 fits above
#: about 2.4 dB, so SNRs drawn in [-10, 15] dB make some rounds infeasible and some feasible
#: (with the policies' ``seed=3``: rounds 0 and 2 feasible, 1 and 3 not, so the 3-round run of the
#: resume test trains and writes a checkpoint).
ENV = AirLLMEnvironment(bandwidth_hz=10e3)
SNRS = UniformSNR(-10.0, 15.0, per_round=True)
DATA = {"clients_per_round": 1, "local_steps": 1}


class RoundRecorder(StageCallback):
    """Keeps, per round, whether it was skipped, its uplink bits, and the live adapter."""

    def __init__(self):
        self.rounds = []

    def on_round_end(self, trainer, pl_module, ctx):
        live = adapter_tensors(pl_module.lora_layers)
        self.rounds.append(
            {
                "skipped": bool(ctx.metrics["round/skipped"]),
                "bits": ctx.metrics["comm/uplink_bits"],
                "airtime_s": ctx.metrics.get("comm/airtime_s"),
                "energy_j": ctx.metrics.get("comm/energy_j"),
                "plan": ctx.plan,
                "uploads": len(ctx.uploads),
                "global": {k: v.clone() for k, v in pl_module.global_adapter.items()},
                "live": {k: v.clone() for k, v in live.items()},
            }
        )


def test_infeasible_rounds_change_no_adapter_tensor_and_upload_nothing(
    tmp_path, tiny_llama_dir, tokenizer
):
    recorder = RoundRecorder()
    policy = RandomFeasiblePolicy(environment=ENV, seed=0)
    callback = RankPolicyCallback(policy, large_scale=SNRS, seed=3, heatmap_every_n_rounds=0)
    _, module = tiny_fit(
        tmp_path, tiny_llama_dir, tokenizer, 6, callbacks=[callback, recorder], data_kwargs=DATA
    )
    start = {k: v.clone() for k, v in adapter_tensors(module.lora_layers).items()}
    rounds = recorder.rounds
    assert {r["skipped"] for r in rounds} == {True, False}  # both kinds happened
    previous = None
    for record in rounds:
        if record["skipped"]:
            assert record["bits"] == 0.0 and record["uploads"] == 0
            before = previous["global"] if previous else None
            if before is not None:
                for name, tensor in record["global"].items():
                    assert torch.equal(tensor, before[name]), name
                    assert torch.equal(record["live"][name], before[name]), name
        else:
            assert record["bits"] > 0 and record["uploads"] == 1
            if previous is not None:
                assert any(
                    not torch.equal(t, previous["global"][n]) for n, t in record["global"].items()
                )
        previous = record
    assert module.ledger.total_bits == sum(r["bits"] for r in rounds)
    assert set(start) == set(rounds[-1]["global"])
    # The link's airtime is the bits the ledger counted at the Shannon rate the policy priced
    # (the SNR its observation drew, B = 10 kHz); energy is the client's power times it.
    for round_idx, record in enumerate(rounds):
        snr_db = callback.channel.snr_db(None, round_idx, record["plan"])
        rate_bps = float(shannon_rate_bps(ENV.bandwidth_hz, snr_db)[0])
        assert record["airtime_s"] == pytest.approx(record["bits"] / rate_bps, rel=1e-12)
        assert record["energy_j"] == pytest.approx(ENV.tx_power_w * record["airtime_s"], rel=1e-12)
        if not record["skipped"]:  # a feasible payload fits the latency budget
            assert 0 < record["airtime_s"] <= ENV.latency_budget_s


def _airllm_callback() -> RankPolicyCallback:
    policy = AirLLMPolicy(
        episode_length=2,
        environment=ENV,
        ppo=PPOSettings(hidden=16),
        ddim=DDIMSettings(hidden=32, num_train_timesteps=50, num_inference_steps=5, warmup=2),
        coarse_dim=4,
        seed=0,
    )
    return RankPolicyCallback(policy, large_scale=SNRS, seed=3, heatmap_every_n_rounds=0)


@pytest.mark.slow  # three tiny fits
def test_resume_with_the_agent_matches_an_uninterrupted_run(tmp_path, tiny_llama_dir, tokenizer):
    full_cb = _airllm_callback()
    _, full = tiny_fit(
        tmp_path / "full", tiny_llama_dir, tokenizer, 5, callbacks=[full_cb], data_kwargs=DATA
    )
    trainer, _ = tiny_fit(
        tmp_path / "cut", tiny_llama_dir, tokenizer, 3, [_airllm_callback()], data_kwargs=DATA
    )
    ckpt = trainer.checkpoint_callback.best_model_path
    assert torch.load(ckpt, weights_only=True)  # the agent's state loads with weights_only
    resumed_cb = _airllm_callback()
    _, resumed = tiny_fit(
        tmp_path / "cut",
        tiny_llama_dir,
        tokenizer,
        5,
        callbacks=[resumed_cb],
        data_kwargs=DATA,
        ckpt_path=ckpt,
    )
    assert resumed_cb.rank_history == full_cb.rank_history
    for name, value in full.global_adapter.items():
        assert torch.equal(resumed.global_adapter[name], value), name
    full_state, resumed_state = full_cb.policy.state_dict(), resumed_cb.policy.state_dict()
    assert torch.equal(full_state["generator"], resumed_state["generator"])
    for name, value in full_state["agent"]["net"].items():
        assert torch.equal(resumed_state["agent"]["net"][name], value), name
    for name, value in full_state["refiner"]["denoiser"].items():
        assert torch.equal(resumed_state["refiner"]["denoiser"][name], value), name
    assert resumed.ledger.total_bits == full.ledger.total_bits


def test_remote_classification_sends_the_head_with_the_priced_adapter(
    tmp_path, tiny_llama_dir, tokenizer
):
    """AirLLM's remote setting on the classification task (one client every round): the head
    is trained and crosses with the adapter, and the ledger counts what the policy priced
    plus the head, sent whole as float32 (``32 * head values``)."""
    from lit_airlora.channel.large_scale import FixedSNR
    from lit_airlora.datamodules import IID
    from lit_airlora.policy.fixed import FixedRank
    from tests.tasks.classification_helpers import classification_fit

    recorder = RoundRecorder()
    callback = RankPolicyCallback(
        FixedRank(2), large_scale=FixedSNR(15.0), heatmap_every_n_rounds=0
    )
    data = {"partitioner": IID(num_clients=1), "clients_per_round": 1, "local_steps": 1}
    trainer, module = classification_fit(
        tmp_path, tiny_llama_dir, tokenizer, 2, callbacks=[callback, recorder], data_kwargs=data
    )
    head_values = sum(p.numel() for p in module.head_parameters.values())
    assert head_values > 0 and all(n in module.global_adapter for n in module.head_parameters)
    priced = float(trainer.logged_metrics["policy/payload_bits"])
    assert [r["bits"] for r in recorder.rounds] == [priced + 32 * head_values] * 2
    first, last = recorder.rounds[0]["global"], recorder.rounds[-1]["global"]
    assert all(not torch.equal(first[n], last[n]) for n in module.head_parameters)
