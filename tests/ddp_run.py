"""A tiny federated fit as a standalone script, for the DDP equivalence test.

Lightning's DDP launcher re-runs the current command for the other ranks, so DDP runs are
tested by launching this script in a subprocess (as Lightning's own standalone tests do):

    python tests/ddp_run.py OUT_DIR MODEL_DIR DEVICES [agent]

With ``agent`` the rank policy is a small AirLLMPolicy (PPO + DDIM) on a link where some
rounds are infeasible (skipped), instead of the importance budget.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import tiny_fit

SCRIPT_PATH = Path(__file__).resolve()


def agent_callback():
    """A small AirLLMPolicy on a 30 kHz link, each client's SNR in [0, 15] dB, the worst of
    the round's 4 clients counting: some rounds are skipped, ranks move in the others."""
    from lit_airlora.callbacks.rank_policy import RankPolicyCallback
    from lit_airlora.channel.large_scale import UniformSNR
    from lit_airlora.policy.agent_settings import DDIMSettings, PPOSettings
    from lit_airlora.policy.airllm import AirLLMPolicy
    from lit_airlora.policy.airllm_env import AirLLMEnvironment

    policy = AirLLMPolicy(
        episode_length=2,
        environment=AirLLMEnvironment(bandwidth_hz=30e3),
        ppo=PPOSettings(hidden=16),
        ddim=DDIMSettings(hidden=32, num_train_timesteps=50, num_inference_steps=5, warmup=2),
        coarse_dim=4,
        seed=0,
    )
    snrs = UniformSNR(0.0, 15.0, per_round=True)
    return RankPolicyCallback(policy, large_scale=snrs, seed=1, heatmap_every_n_rounds=0)


def run(out_dir: str, model_dir: str, devices: int, agent: bool = False):
    """The fit of this script; returns ``(trainer, module, rank_callback)``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    from lit_airlora.callbacks.rank_policy import RankPolicyCallback
    from lit_airlora.policy.importance import ImportanceBudget

    strategy = "ddp" if devices > 1 else "auto"
    # Ranks move between rounds (importance budget of 10 components over 4 modules): DDP, the
    # optimizer and the masks must keep the ranks in step.
    if agent:
        callback = agent_callback()
    else:
        budget = ImportanceBudget(total_rank_budget=10)
        callback = RankPolicyCallback(budget, heatmap_every_n_rounds=100)
    trainer, module = tiny_fit(
        Path(out_dir),
        model_dir,
        tokenizer,
        max_epochs=5 if agent else 3,
        callbacks=[callback],
        data_kwargs={"clients_per_round": 4, "local_steps": 1 if agent else 2},
        devices=devices,
        strategy=strategy,
        enable_checkpointing=False,
    )
    return trainer, module, callback


def result(trainer, module, callback) -> dict:
    return {
        "global_adapter": module.global_adapter,
        "bits": module.ledger.total_bits,
        "ranks": module.ranks,
        "rank_history": callback.rank_history,
        "train_loss": float(trainer.logged_metrics["round/train_loss"]),
    }


def main(out_dir: str, model_dir: str, devices: int, agent: bool = False) -> None:
    trainer, module, callback = run(out_dir, model_dir, devices, agent)
    if trainer.is_global_zero:
        torch.save(result(trainer, module, callback), Path(out_dir) / f"result_{devices}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), agent=sys.argv[4:] == ["agent"])
