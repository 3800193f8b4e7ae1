"""Trainer flags checked against federated rounds (one epoch is one round) before training.

Each flag either works as a Lightning user expects or is refused with one line saying why and
what to use instead. Flags Lightning itself refuses under manual optimisation
(``accumulate_grad_batches``, ``gradient_clip_val``) never reach these checks.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint, Timer
from lightning.pytorch.utilities import rank_zero_info

#: Precisions that cast the adapters themselves to half precision (LoRA maths stays float32).
HALF_WEIGHT_PRECISIONS = (
    "16-true",
    "bf16-true",
    "transformer-engine",
    "transformer-engine-float16",
)


def check_trainer(trainer) -> None:
    """Refuse the Trainer flags a federated round cannot honour; adapt ``max_time``."""
    _check_val_check_interval(trainer.val_check_interval)
    _check_precision(str(trainer.precision))
    _check_distributed_sampler(trainer)
    for callback in trainer.callbacks:
        if isinstance(callback, ModelCheckpoint):
            _check_checkpoint_interval(callback)
    _time_limit_at_round_ends(trainer)


def _check_val_check_interval(value) -> None:
    if value != 1.0:
        raise ValueError(
            f"`val_check_interval` ({value!r}) would validate in the middle of a round, where the "
            "model holds one client's adapter: one epoch is one round, so leave it at 1.0 and "
            "use `check_val_every_n_epoch` to validate every n rounds."
        )


def _check_precision(precision: str) -> None:
    if precision in HALF_WEIGHT_PRECISIONS:
        raise ValueError(
            f"`precision` ({precision!r}) casts the LoRA adapters to half precision, but local "
            "updates and aggregation run in float32: use 'bf16-mixed' (CPU or GPU) or '16-mixed' "
            "(GPU)."
        )


def _check_distributed_sampler(trainer) -> None:
    # Lightning exposes this Trainer flag only on its accelerator connector.
    connector = getattr(trainer, "_accelerator_connector", None)
    if trainer.world_size > 1 and getattr(connector, "use_distributed_sampler", False):
        raise ValueError(
            "`use_distributed_sampler` (True) would re-shard batches that the federated "
            "datamodule already shares out by client across ranks: set "
            "`Trainer(use_distributed_sampler=False)`."
        )


def _check_checkpoint_interval(callback: ModelCheckpoint) -> None:
    # ModelCheckpoint keeps its intervals private; both save in the middle of a round.
    steps = getattr(callback, "_every_n_train_steps", 0)
    interval = getattr(callback, "_train_time_interval", None)
    if steps or interval is not None:
        name, value = ("every_n_train_steps", steps) if steps else ("train_time_interval", interval)
        raise ValueError(
            f"`ModelCheckpoint({name}={value})` saves in the middle of a round, which would "
            "lose the uploads of the clients trained so far: checkpoint at round ends with "
            "`every_n_epochs` (one epoch is one round)."
        )


def _time_limit_at_round_ends(trainer) -> None:
    """``max_time`` stops at the first round end past the limit, never inside a round."""
    for i, callback in enumerate(trainer.callbacks):
        # Timer keeps its interval private; the Trainer's own max_time Timer checks every step.
        per_step = getattr(callback, "_interval", "epoch") != "epoch"
        if type(callback) is Timer and callback.time_remaining() is not None and per_step:
            seconds = callback.time_remaining()
            trainer.callbacks[i] = Timer(duration={"seconds": seconds}, interval="epoch")
            rank_zero_info("`max_time` is checked at the end of each round (a round is never cut).")
