"""lit-airlora: the same task through FederatedLoRAModule and a Lightning Trainer."""

from __future__ import annotations

import tempfile
import time

from task import MODEL, TaskSettings, build_datamodule


def run(task: TaskSettings, queue) -> None:
    """Train ``task.rounds`` rounds; put the round-end times and perplexities on ``queue``."""
    import lightning as L
    import torch

    from lit_airlora.lora.config import LoRASettings
    from lit_airlora.module import FederatedLoRAModule

    torch.set_num_threads(task.threads)
    round_end: list[float] = []

    class RoundEnd(L.Callback):
        def on_validation_end(self, trainer, pl_module):
            round_end.append(time.time())

    L.seed_everything(task.seed, verbose=False)
    module = FederatedLoRAModule(
        **MODEL,
        lora=LoRASettings(max_rank=task.rank, alpha=task.alpha, dropout=0.0),
        learning_rate=task.learning_rate,
        gradient_clip_val=None,
        export_dir=tempfile.mkdtemp(prefix="peers_lit_"),
        cache_round0_metrics=False,  # the bare loop and Flower score round 0 in every run
    )
    trainer = L.Trainer(
        max_epochs=task.rounds,
        accelerator="cpu",
        devices=1,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[RoundEnd()],
    )
    trainer.fit(module, datamodule=build_datamodule(task))
    queue.put({"round_end": round_end, "perplexity": list(module.perplexity_history)})
