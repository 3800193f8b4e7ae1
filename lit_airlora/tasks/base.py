"""The task protocol: model head, loss and held-out metrics of what is fine-tuned.

One round engine (``FederatedLoRAModule``) serves every task; a task only says which Hugging
Face model class to load, how a batch becomes a loss, and which metrics validation reports.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from lit_airlora.init_args import RecordsInitArgs


class Task(RecordsInitArgs):
    """What the federated module fine-tunes for, chosen in YAML by ``class_path``.

    Attributes:
        peft_task_type: peft's ``task_type`` (``"CAUSAL_LM"``, ``"SEQ_CLS"``); for ``SEQ_CLS``
            peft also trains and saves the classification head (``modules_to_save``).
        headline_metric: Validation metric tracked per round (``module.history``) and printed
            at the end of ``fit``.
    """

    peft_task_type: str = "CAUSAL_LM"
    headline_metric: str = "val/loss"

    def load_model(self, model: str, gguf_file: str | None, cache_dir: str | None, tokenizer):
        """The base model (frozen later; LoRA and the head are added by the module)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """Training loss of one batch (a 0-d tensor)."""
        raise NotImplementedError

    def metrics(self) -> nn.Module:
        """Fresh validation metrics (a torchmetrics collection; the module owns it)."""
        raise NotImplementedError

    def update_metrics(self, metrics: nn.Module, model: nn.Module, batch: dict[str, Tensor]):
        """Accumulate one validation batch."""
        raise NotImplementedError

    def compute_metrics(self, metrics: nn.Module) -> dict[str, float]:
        """Values to log (``"val/..."`` keys), then reset the metrics."""
        raise NotImplementedError

    def check_data(self, datamodule: Any) -> None:
        """Raise before training if the datamodule does not fit the task (default: no check)."""
