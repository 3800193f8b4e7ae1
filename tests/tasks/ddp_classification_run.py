"""A tiny federated classification fit as a standalone script, for the DDP equivalence test.

Lightning's DDP launcher re-runs the current command for the other ranks, so the test launches
this script in a subprocess (as tests/ddp_run.py does for the causal-LM task):

    python tests/tasks/ddp_classification_run.py OUT_DIR MODEL_DIR DEVICES
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.tasks.classification_helpers import classification_fit


def main(out_dir: str, model_dir: str, devices: int) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    trainer, module = classification_fit(
        Path(out_dir),
        model_dir,
        tokenizer,
        max_epochs=2,
        data_kwargs={"clients_per_round": 4},
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        enable_checkpointing=False,
    )
    if trainer.is_global_zero:
        result = {
            "global_adapter": module.global_adapter,
            "bits": module.ledger.total_bits,
            "history": module.history,
        }
        torch.save(result, Path(out_dir) / f"result_{devices}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
