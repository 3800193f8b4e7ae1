"""Figures to every logger of a trainer that can store them, on global rank zero."""

from __future__ import annotations

import logging

from lightning.pytorch.loggers import Logger, MLFlowLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_warn

log = logging.getLogger(__name__)

#: Logger classes already told (once per process) that they receive no figures.
_NOTED: set[str] = set()


def log_figure(trainer, tag: str, figure, step: int) -> bool:
    """Add a matplotlib ``figure`` to every logger of ``trainer`` that takes figures.

    TensorBoard (``add_figure``), MLflow (``log_figure``) and Weights & Biases (``log_image``)
    take them; any other logger (CSV ...) is skipped with a one-time warning naming it.

    Args:
        trainer: The trainer whose ``loggers`` receive the figure.
        tag: Figure name, e.g. ``"policy/rank_heatmap"``.
        figure: A matplotlib ``Figure``.
        step: The step (round) it belongs to.

    Returns:
        Whether any logger took it (always False off global rank zero).
    """
    if not trainer.is_global_zero:
        return False
    logged = False
    for logger in trainer.loggers:
        if add_figure(logger, tag, figure, step):
            logged = True
        else:
            _note_skipped(logger, tag)
    return logged


def add_figure(logger: Logger, tag: str, figure, step: int) -> bool:
    """Hand ``figure`` to one logger; False when that logger has no figure API."""
    if isinstance(logger, MLFlowLogger):
        logger.experiment.log_figure(logger.run_id, figure, f"{tag}/step_{step}.png")
        return True
    if isinstance(logger, WandbLogger):
        logger.log_image(key=tag, images=[figure], step=step)
        return True
    add = getattr(getattr(logger, "experiment", None), "add_figure", None)
    if callable(add):  # TensorBoard's SummaryWriter
        add(tag, figure, global_step=step, close=False)
        return True
    return False


def _note_skipped(logger: Logger, tag: str) -> None:
    name = type(logger).__name__
    if name not in _NOTED:
        _NOTED.add(name)
        rank_zero_warn(
            f"{name} stores no figures, so `{tag}` and later figures are not saved there; add a "
            "TensorBoardLogger (or MLFlowLogger, WandbLogger) to the trainer's loggers for them."
        )
