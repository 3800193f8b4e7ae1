"""Mixin that lets a stage callback work in any LightningModule holding a peft LoRA model."""

from __future__ import annotations

from typing_extensions import override

from lit_airlora.federated.remote import (
    check_remote_mode,
    is_federated,
    remote_round,
    swap_in_received,
    swap_out_received,
)
from lit_airlora.federated.stages import StageCallback


class RemoteLinkMixin(StageCallback):
    """In a foreign module, run the upload stages on the adapter at each training epoch end.

    The round runs on the epoch's last training batch, so that the validation loop (which
    Lightning runs before ``on_train_epoch_end``) already sees the received adapter.

    Subclasses set ``self.remote_mode`` (``"replace"`` or ``"shadow"``) and ``self.seed``.
    In our federated module these hooks do nothing: the module dispatches the stages itself.
    """

    drives_stages = True
    remote_mode: str = "replace"
    seed: int = 0

    def _check_remote(self) -> None:
        check_remote_mode(self.remote_mode)

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.is_last_batch and not is_federated(pl_module):
            remote_round(trainer, pl_module, self.remote_mode, self.seed)

    @override
    def on_validation_start(self, trainer, pl_module) -> None:
        if not is_federated(pl_module):
            swap_in_received(pl_module)

    @override
    def on_validation_end(self, trainer, pl_module) -> None:
        if not is_federated(pl_module):
            swap_out_received(pl_module)
