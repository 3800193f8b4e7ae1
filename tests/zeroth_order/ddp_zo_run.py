"""A tiny pAirZero fit (analog uplink, privacy budget) as a script, for the DDP test:

python tests/zeroth_order/ddp_zo_run.py OUT_DIR MODEL_DIR DEVICES
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.helpers import tiny_fit


def run(out_dir: Path, model_dir: str, devices: int) -> dict:
    """Three rounds, 4 clients per round (2 per rank on 2 ranks), S = 2 directions."""
    from transformers import AutoTokenizer

    from lit_airlora.callbacks.scalar_over_the_air import AnalogScalarAggregation
    from lit_airlora.channel.fading import RayleighBlock
    from lit_airlora.channel.large_scale import FixedSNR
    from lit_airlora.zeroth_order import PrivacyBudget, ZerothOrder

    channel = AnalogScalarAggregation(
        FixedSNR(20.0), RayleighBlock(), min_gain_db=5.0, privacy=PrivacyBudget(5.0, 0.01)
    )
    trainer, module = tiny_fit(
        out_dir, model_dir, AutoTokenizer.from_pretrained(model_dir), max_epochs=3,
        callbacks=[channel], devices=devices, strategy="ddp" if devices > 1 else "auto",
        enable_checkpointing=False, data_kwargs={"clients_per_round": 4, "local_steps": 1},
        module_kwargs={"zeroth_order": ZerothOrder(num_perturbations=2, learning_rate=1e-3)},
    )  # fmt: skip
    return {
        "is_global_zero": trainer.is_global_zero,
        "global_adapter": module.global_adapter,
        "epsilon": float(module.last_metrics["privacy/epsilon"]),
        "bits": module.ledger.total_bits,
    }


if __name__ == "__main__":
    result = run(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
    if result.pop("is_global_zero"):
        torch.save(result, Path(sys.argv[1]) / "result.pt")
