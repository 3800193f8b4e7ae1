"""Causal language modelling: next-token loss, held-out perplexity (the default task)."""

from __future__ import annotations

import math

from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.text import Perplexity
from typing_extensions import override

from lit_airlora.models import load_causal_lm
from lit_airlora.tasks.base import Task


class CausalLM(Task):
    """Next-token prediction on packed blocks (``FederatedTextDataModule``); validation logs
    ``val/perplexity`` and ``val/loss`` (its log)."""

    peft_task_type = "CAUSAL_LM"
    headline_metric = "val/perplexity"

    @override
    def load_model(self, model: str, gguf_file: str | None, cache_dir: str | None, tokenizer):
        return load_causal_lm(model, gguf_file, cache_dir)

    @override
    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            labels=batch["labels"],
        ).loss

    @override
    def metrics(self) -> nn.Module:
        return MetricCollection({"perplexity": Perplexity(ignore_index=-100)})

    @override
    def update_metrics(self, metrics: nn.Module, model: nn.Module, batch: dict[str, Tensor]):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        metrics["perplexity"].update(logits[:, :-1].float(), batch["labels"][:, 1:])  # (B, T-1, V)

    @override
    def compute_metrics(self, metrics: nn.Module) -> dict[str, float]:
        perplexity = float(metrics["perplexity"].compute())
        metrics.reset()
        return {"val/perplexity": perplexity, "val/loss": math.log(perplexity)}
