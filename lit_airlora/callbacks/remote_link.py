"""Mixin that lets a stage callback work in any LightningModule holding a peft LoRA model."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lit_airlora.federated.plan import RoundPlan
from lit_airlora.federated.remote import (
    RemoteState,
    check_remote_mode,
    is_federated,
    remote_plan,
    remote_round,
    swap_in_received,
    swap_out_received,
)
from lit_airlora.federated.stages import StageCallback


class RemoteLinkMixin(StageCallback):
    """In a foreign module, run the upload stages on the adapter once per training epoch.

    The first remote-link callback of ``trainer.callbacks`` drives the rounds (the others'
    stage hooks run inside its round) and keeps the round's state, checkpointed with it. The
    round runs after the epoch's last training step, so that the validation loop (which
    Lightning runs before ``on_train_epoch_end``) sees the received adapter: the last step is
    the last batch Lightning will run (``limit_train_batches`` and ``max_steps`` included); an
    epoch cut short otherwise (``max_time``) runs its round at ``on_train_epoch_end``. See
    :mod:`lit_airlora.federated.remote` for what replace and shadow modes keep.

    Subclasses set ``self.remote_mode`` (``"replace"`` or ``"shadow"``) and ``self.seed``.
    In our federated module these hooks do nothing: the module dispatches the stages itself.
    """

    drives_stages = True
    remote_mode: str = "replace"
    seed: int = 0

    def _check_remote(self) -> None:
        check_remote_mode(self.remote_mode)

    @property
    def remote_state(self) -> RemoteState:
        """The remote-link round state (used by the driving callback)."""
        return self.__dict__.setdefault("_remote_state", RemoteState())

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if not is_federated(pl_module) and self._drives(trainer, pl_module):
            _check_same_mode(trainer.callbacks, self.remote_mode)

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._drives(trainer, pl_module) and _last_step(trainer, batch_idx):
            remote_round(trainer, pl_module, self.remote_state, self.remote_mode, self.seed)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._drives(trainer, pl_module):  # an epoch cut short: no-op if the round ran
            remote_round(trainer, pl_module, self.remote_state, self.remote_mode, self.seed)

    @override
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.remote_mode == "shadow" and self._drives(trainer, pl_module):
            swap_in_received(pl_module, self.remote_state)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._drives(trainer, pl_module):
            swap_out_received(pl_module, self.remote_state)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"remote": self.remote_state.state_dict()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "remote" in state_dict:
            self.remote_state.load_state_dict(state_dict["remote"])

    def _drives(self, trainer: Trainer, pl_module: LightningModule) -> bool:
        if is_federated(pl_module):
            return False
        return remote_driver(trainer) is self


def remote_driver(trainer: Trainer) -> RemoteLinkMixin | None:
    """The remote-link callback that drives the rounds in a plain module (the first one)."""
    return next((c for c in trainer.callbacks if isinstance(c, RemoteLinkMixin)), None)


def current_plan(trainer: Trainer, pl_module: LightningModule, round_idx: int) -> RoundPlan | None:
    """Round ``round_idx``'s plan: the one our module published, or the remote link's.

    None when unknown (our module has not planned that round; no remote link drives rounds).
    """
    if is_federated(pl_module):
        plan = pl_module.round_plan
        return plan if plan is not None and plan.round_idx == round_idx else None
    driver = remote_driver(trainer)
    return None if driver is None else remote_plan(driver.seed, round_idx)


def _last_step(trainer: Trainer, batch_idx: int) -> bool:
    """Whether Lightning runs no further training batch this epoch."""
    if trainer.is_last_batch or batch_idx + 1 >= trainer.num_training_batches:
        return True
    max_steps = trainer.max_steps
    return max_steps is not None and 0 <= max_steps <= trainer.global_step


def _check_same_mode(callbacks, remote_mode: str) -> None:
    links = [c for c in callbacks if isinstance(c, RemoteLinkMixin)]
    if len({c.remote_mode for c in links}) > 1:
        modes = ", ".join(f"{type(c).__qualname__}: {c.remote_mode!r}" for c in links)
        raise ValueError(
            f"`remote_mode` differs between the remote-link callbacks ({modes}); one round "
            f"carries one adapter: give them all the same `remote_mode` ({remote_mode!r} is used "
            "by the first)."
        )
