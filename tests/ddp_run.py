"""A tiny federated fit as a standalone script, for the DDP equivalence test.

Lightning's DDP launcher re-runs the current command for the other ranks, so DDP runs are
tested by launching this script in a subprocess (as Lightning's own standalone tests do):

    python tests/ddp_run.py OUT_DIR MODEL_DIR DEVICES
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import tiny_fit


def main(out_dir: str, model_dir: str, devices: int) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    from lit_airlora.callbacks.rank_policy import RankPolicyCallback
    from lit_airlora.policy.importance import ImportanceBudget

    strategy = "ddp" if devices > 1 else "auto"
    # Ranks move between rounds (importance budget of 10 components over 4 modules): DDP, the
    # optimizer and the masks must keep the ranks in step.
    policy = RankPolicyCallback(ImportanceBudget(total_rank_budget=10), heatmap_every_n_rounds=100)
    trainer, module = tiny_fit(
        Path(out_dir),
        model_dir,
        tokenizer,
        max_epochs=3,
        callbacks=[policy],
        data_kwargs={"clients_per_round": 4},
        devices=devices,
        strategy=strategy,
        enable_checkpointing=False,
    )
    if trainer.is_global_zero:
        torch.save(
            {
                "global_adapter": module.global_adapter,
                "bits": module.ledger.total_bits,
                "ranks": module.ranks,
                "train_loss": float(trainer.logged_metrics["round/train_loss"]),
            },
            Path(out_dir) / f"result_{devices}.pt",
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
