"""Sequence classification with a decoder LM: a fresh linear head on the last token."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from typing_extensions import override

from lit_airlora.datamodules.blocks import IGNORE_INDEX
from lit_airlora.models import load_sequence_classifier
from lit_airlora.tasks.base import Task


class SequenceClassification(Task):
    """Fine-tune ``AutoModelForSequenceClassification`` of any decoder (Llama, OPT, Qwen, ...).

    The model scores the hidden state of the last non-pad token with a fresh linear head
    (``score``); the tokenizer's pad id is written into the model config so that token is found
    (decoders without a pad token use EOS, see ``load_tokenizer``). peft's ``SEQ_CLS`` task
    trains the head in full beside LoRA (``modules_to_save``); the module federates it like the
    adapter (FedAvg of head deltas, counted in the ledger) and exports it with the adapter. The
    loss is cross-entropy; validation logs ``val/accuracy``, ``val/f1_macro`` (torchmetrics),
    ``val/loss`` and the F1 of every class under its name (``val/f1/<label name>``), as used by
    AirLLM (Yang et al., arXiv 2507.11515) and pAirZero. Samples labelled ``-100`` (the padding
    that evens out DDP validation shards) count in none of them, so 2 ranks score as 1.

    Args:
        num_labels: Outputs of the head (>= 2). The data may hold fewer classes, never more.
    """

    peft_task_type = "SEQ_CLS"
    headline_metric = "val/accuracy"

    def __init__(self, num_labels: int):
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(
                f"`num_labels` ({num_labels!r}) must be an int >= 2 (the number of classes)."
            )
        self.num_labels = num_labels
        self.label_names = [str(i) for i in range(num_labels)]

    @override
    def load_model(self, model: str, gguf_file: str | None, cache_dir: str | None, tokenizer):
        return load_sequence_classifier(
            model, self.num_labels, int(tokenizer.pad_token_id), gguf_file, cache_dir
        )

    @override
    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return F.cross_entropy(self._logits(model, batch), batch["labels"])

    @override
    def metrics(self) -> nn.Module:
        classes, ignore = self.num_labels, IGNORE_INDEX  # DDP shards pad with ignored samples
        return MetricCollection(
            {
                "accuracy": MulticlassAccuracy(classes, average="micro", ignore_index=ignore),
                "f1_macro": MulticlassF1Score(classes, average="macro", ignore_index=ignore),
                "f1_per_class": MulticlassF1Score(classes, average="none", ignore_index=ignore),
                "loss": MeanMetric(),
            }
        )

    @override
    def update_metrics(self, metrics: nn.Module, model: nn.Module, batch: dict[str, Tensor]):
        logits = self._logits(model, batch)  # (B, num_labels)
        labels = batch["labels"]  # (B,)
        for name in ("accuracy", "f1_macro", "f1_per_class"):
            metrics[name].update(logits, labels)
        loss = F.cross_entropy(logits, labels, reduction="none", ignore_index=IGNORE_INDEX)
        metrics["loss"].update(loss, weight=(labels != IGNORE_INDEX).float())

    @override
    def compute_metrics(self, metrics: nn.Module) -> dict[str, float]:
        per_class = metrics["f1_per_class"].compute().tolist()
        values = {
            "val/accuracy": float(metrics["accuracy"].compute()),
            "val/f1_macro": float(metrics["f1_macro"].compute()),
            "val/loss": float(metrics["loss"].compute()),
        }
        values.update({f"val/f1/{n}": per_class[i] for i, n in enumerate(self.label_names)})
        metrics.reset()
        return values

    @override
    def check_data(self, datamodule: Any) -> None:
        """Take the datamodule's label names; refuse more classes than the head has."""
        names = getattr(datamodule, "label_names", None)
        if names is None:
            raise TypeError(
                f"SequenceClassification needs labelled data: the datamodule "
                f"({type(datamodule).__name__}) has no `label_names`; use "
                "lit_airlora.datamodules.FederatedClassificationDataModule."
            )
        if len(names) > self.num_labels:
            raise ValueError(
                f"The data holds {len(names)} classes ({list(names)[:8]}) but `num_labels` "
                f"({self.num_labels}) sizes the head; set `num_labels` >= {len(names)}."
            )
        self.label_names = [str(n) for n in names]

    def _logits(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return out.logits.float()  # (B, num_labels)
