"""Causal language modelling: next-token loss, held-out perplexity (the default task)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
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
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return next_token_loss(out.logits, batch["labels"])

    @override
    def metrics(self) -> nn.Module:
        return MetricCollection({"perplexity": NextTokenPerplexity()})

    @override
    def update_metrics(self, metrics: nn.Module, model: nn.Module, batch: dict[str, Tensor]):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        metrics["perplexity"].update(logits, batch["labels"])  # (B, T, V), (B, T)

    @override
    def compute_metrics(self, metrics: nn.Module) -> dict[str, float]:
        perplexity = float(metrics["perplexity"].compute())
        metrics.reset()
        return {"val/perplexity": perplexity, "val/loss": math.log(perplexity)}


class NextTokenPerplexity(Perplexity):
    """torchmetrics' ``Perplexity`` (its states, reduction across ranks and ``compute``), updated
    from a model's logits and unshifted labels: position ``t`` scores token ``t + 1``, -100 is
    not scored.

    The parent's update takes a softmax over a copy of the ``(tokens, vocab)`` logits, then its
    log; ``cross_entropy`` (a fused log-softmax) over the contiguous logits gives the same sum
    without the copies (the last position is ignored instead of sliced off).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(ignore_index=-100, **kwargs)

    @override
    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Add a batch.

        Args:
            logits: ``[batch, seq, vocab]``, any floating dtype (scored in float32).
            labels: ``[batch, seq]``, int64, -100 where not scored.
        """
        targets = torch.full_like(labels, -100)
        targets[:, :-1] = labels[:, 1:]  # (B, T): the token each position predicts
        flat = logits.reshape(-1, logits.shape[-1]).float()  # (B*T, V), a view when contiguous
        nll = F.cross_entropy(flat, targets.reshape(-1), ignore_index=-100, reduction="sum")
        self.total_log_probs += nll
        self.count += (targets != -100).sum()


def next_token_loss(logits: Tensor, labels: Tensor, chunk_tokens: int = 256) -> Tensor:
    """Mean cross-entropy of ``logits[:, t]`` against ``labels[:, t + 1]`` (-100 ignored), as
    Hugging Face's causal-LM loss, over chunks of positions.

    ``cross_entropy`` materialises a log-softmax as large as its input: over a whole batch that
    is a second copy of the full-vocabulary logits (192 MiB for SmolLM2 at 8 x 128 tokens), per
    chunk it is ``chunk_tokens x vocab``. Under autograd the chunks keep what one call keeps.

    Args:
        logits: ``[batch, seq, vocab]``, any floating dtype (cross-entropy in float32).
        labels: ``[batch, seq]``, int64, -100 where not scored.
        chunk_tokens: Positions per cross-entropy call.
    """
    total = logits.new_zeros((), dtype=torch.float32)
    count = (labels[:, 1:] != -100).sum()
    for b in range(logits.shape[0]):
        for t in range(0, logits.shape[1] - 1, chunk_tokens):
            end = min(t + chunk_tokens, logits.shape[1] - 1)
            piece = logits[b, t:end].float()  # (chunk, V), a view of contiguous logits
            target = labels[b, t + 1 : end + 1]
            total = total + F.cross_entropy(piece, target, ignore_index=-100, reduction="sum")
    return total / count
