"""Tiny federated fits as a standalone script, for the DDP equivalence tests.

Lightning's DDP launcher re-runs the current command for the other ranks, so DDP runs are
tested by launching this script in a subprocess (as Lightning's own standalone tests do). One
launch runs several cases in turn (the process group is reused), each ``<channel>:<clients per
round>``; rank 0 saves one result file per case:

    python tests/ddp_run.py OUT_DIR MODEL_DIR DEVICES ideal:4 siso:3 mimo:5 digital:4
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_airlora.lora.config import LoRASettings
from tests.helpers import tiny_fit

#: Records of the toy classification set: 4 clients, an odd number of validation samples.
CLASSIFY_RECORDS = 93  # 24 + 3 x 23 records: 6 + 3 x 5 = 21 validation samples


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


def _callbacks(channel: str) -> list:
    from lit_airlora.callbacks.digital_link import DigitalUplink
    from lit_airlora.callbacks.over_the_air import OverTheAirAggregation
    from lit_airlora.callbacks.rank_policy import RankPolicyCallback
    from lit_airlora.callbacks.soft import SOFT
    from lit_airlora.channel.abstraction import AbstractionLink
    from lit_airlora.channel.fading import FlatMIMO, RayleighBlock
    from lit_airlora.channel.large_scale import UniformSNR
    from lit_airlora.channel.quantize import UniformQuantizer
    from lit_airlora.policy.importance import ImportanceBudget

    factories = {
        "ideal": list,
        "siso": lambda: [OverTheAirAggregation(UniformSNR(5.0, 25.0), RayleighBlock())],
        "mimo": lambda: [
            OverTheAirAggregation(UniformSNR(5.0, 25.0), FlatMIMO(4, 2), num_streams=2)
        ],
        "digital": lambda: [
            DigitalUplink(
                AbstractionLink(bandwidth_hz=1e6, max_retransmissions=1),
                UniformQuantizer(8),
                large_scale=UniformSNR(0.0, 20.0),
                small_scale=RayleighBlock(),
            )
        ],
        "soft": lambda: [SOFT(rho=0.0, lambda_orth=1e-2)],
        "dropout": list,  # LoRA dropout 0.1: per-client seeds make the masks rank-independent
        # Ranks move between rounds (a budget of 10 components over 4 modules): DDP, the
        # optimizer and the masks must keep the ranks in step.
        "policy": lambda: [
            RankPolicyCallback(ImportanceBudget(total_rank_budget=10), heatmap_every_n_rounds=100)
        ],
        "agent": lambda: [agent_callback()],  # AirLLM's PPO + DDIM agent; some rounds skipped
    }
    return factories[channel]()


def classify_case(out_dir: Path, model_dir: str, devices: int, case: str, tokenizer) -> None:
    """The classification task with a validation set of odd size: 2 ranks pad one shard."""
    from tests.tasks.classification_helpers import classification_fit

    clients_per_round = int(case.split(":")[1])
    rank_dir = out_dir / case.replace(":", "_") / f"rank{os.environ.get('LOCAL_RANK', '0')}"
    trainer, module = classification_fit(
        rank_dir,
        model_dir,
        tokenizer,
        max_epochs=2,
        data_kwargs={"clients_per_round": clients_per_round, "local_steps": 1},
        num_records=CLASSIFY_RECORDS,
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        enable_checkpointing=False,
    )
    if trainer.is_global_zero:
        val = {k: float(v) for k, v in trainer.logged_metrics.items() if k.startswith("val/")}
        result = {
            "global_adapter": module.global_adapter,
            "bits": module.ledger.total_bits,
            "ranks": module.ranks,
            "train_loss": float(trainer.logged_metrics["round/train_loss"]),
            "history": list(module.history),
            "global_step": trainer.global_step,
            "rank_history": {},
            "val_metrics": val,
            "num_val": len(trainer.datamodule.val_set),
        }
        torch.save(result, out_dir / f"{case.replace(':', '_')}_{devices}.pt")


def run_case(out_dir: Path, model_dir: str, devices: int, case: str, tokenizer) -> None:
    channel, clients_per_round = case.split(":")
    if channel == "classify":
        classify_case(out_dir, model_dir, devices, case, tokenizer)
        return
    lora = LoRASettings(max_rank=4, dropout=0.1 if channel == "dropout" else 0.0)
    callbacks = _callbacks(channel)
    rank_dir = out_dir / case.replace(":", "_") / f"rank{os.environ.get('LOCAL_RANK', '0')}"
    trainer, module = tiny_fit(
        rank_dir,
        model_dir,
        tokenizer,
        max_epochs=5 if channel == "agent" else 2,
        callbacks=callbacks,
        module_kwargs={"lora": lora},
        data_kwargs={"clients_per_round": int(clients_per_round), "local_steps": 1},
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        enable_checkpointing=False,
    )
    if trainer.is_global_zero:
        result = {
            "global_adapter": module.global_adapter,
            "bits": module.ledger.total_bits,
            "ranks": module.ranks,
            "train_loss": float(trainer.logged_metrics["round/train_loss"]),
            "history": list(module.history),
            "global_step": trainer.global_step,
            "rank_history": getattr(callbacks[0], "rank_history", {}) if callbacks else {},
        }
        torch.save(result, out_dir / f"{case.replace(':', '_')}_{devices}.pt")


def main(out_dir: str, model_dir: str, devices: int, cases: list[str]) -> None:
    from transformers import AutoTokenizer

    torch.set_num_threads(1)  # one thread: matrix products sum in the same order in every run
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for case in cases:
        run_case(Path(out_dir), model_dir, devices, case, tokenizer)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:])
