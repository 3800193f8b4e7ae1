"""A tiny SplitLLM fit as a standalone script, for the DDP equivalence test.

python tests/split/ddp_split_run.py OUT_DIR MODEL_DIR DEVICES
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.split.helpers import split_fit


def main(out_dir: str, model_dir: str, devices: int) -> None:
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    strategy = "ddp" if devices > 1 else "auto"
    trainer, module = split_fit(
        Path(out_dir),
        model_dir,
        tokenizer,
        max_epochs=2,
        devices=devices,
        strategy=strategy,
        enable_checkpointing=False,
    )
    if trainer.is_global_zero:
        torch.save(
            {
                "global_adapter": module.global_adapter,
                "traffic_bits": module.traffic.total_bits,
                "uplink_bits": module.ledger.total_bits,
                "train_loss": float(trainer.logged_metrics["round/train_loss"]),
            },
            Path(out_dir) / f"result_{devices}.pt",
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
