"""The LightningCLI behind ``lit-airlora`` (``fit``, ``validate``, ``test``, ``predict``).

Experiments differ only in YAML: the model, datamodule, callbacks (channels, compression, rank
policies) and aggregator are chosen by ``class_path``.
"""

from __future__ import annotations

from argparse import ArgumentError
from collections.abc import Callable
from pathlib import Path

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI
from typing_extensions import override

from lit_airlora.cli.checkpoints import check_checkpoint
from lit_airlora.cli.messages import describe
from lit_airlora.cli.run_started import RunStarted
from lit_airlora.errors import ConfigError

TRAINER_DEFAULTS = {
    # Clients are sharded over ranks by the round schedule, not by a DistributedSampler.
    "use_distributed_sampler": False,
    "num_sanity_val_steps": 0,
    "log_every_n_steps": 1,
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "runs", "name": "lit_airlora"},
    },
}


class AirLoRACLI(LightningCLI):
    """LightningCLI with the project's defaults, one-line configuration errors and a summary.

    Parser errors, errors while building the classes and ``ValueError``/``TypeError``/
    ``OSError`` raised before the run starts (``setup`` hooks, model building, checkpoint
    restore) are raised as ``ConfigError``; from the first run hook on, errors pass unchanged.
    Lightning's checkpoint callback also writes ``last.ckpt`` (unless told otherwise).

    Args:
        on_run_start: Called when the run starts (the CLI prints held-back logs there).
        *args: As for ``LightningCLI``.
        **kwargs: As for ``LightningCLI``.
    """

    def __init__(self, *args, on_run_start: Callable[[], None] | None = None, **kwargs) -> None:
        self._run_started = RunStarted(on_run_start)
        super().__init__(*args, **kwargs)

    @override
    def init_parser(self, **kwargs):
        kwargs.setdefault("exit_on_error", False)  # raise, so the error can be condensed
        return super().init_parser(**kwargs)

    @override
    def parse_arguments(self, parser, args) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise ConfigError(describe(err)) from err

    @override
    def _parse_ckpt_path(self) -> None:
        # Lightning reads the checkpoint's hyperparameters here, before building anything.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path:
            check_checkpoint(ckpt_path)
        try:
            super()._parse_ckpt_path()
        except ArgumentError as err:
            raise ConfigError(
                f"`--ckpt_path` ({ckpt_path!r}): its hyperparameters do not fit this config: "
                f"{describe(err)}"
            ) from err

    @override
    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, OSError, MisconfigurationException) as err:
            # Lightning reports Trainer flags this machine cannot honour (accelerator, devices)
            # as MisconfigurationException: a configuration error like the others.
            raise ConfigError(describe(err)) from err
        self.trainer.callbacks.append(self._run_started)
        _save_last_by_default(self.trainer)

    @override
    def _run_subcommand(self, subcommand: str) -> None:
        # LightningCLI has no public hook around the trainer call: wrap its dispatcher.
        try:
            super()._run_subcommand(subcommand)
        except (ValueError, TypeError, OSError) as err:
            if self._run_started.started or isinstance(err, ConfigError):
                raise
            raise ConfigError(describe(err)) from err

    @override
    def before_fit(self) -> None:
        self._check_ckpt_path()

    before_validate = before_test = before_predict = before_fit

    def _check_ckpt_path(self) -> None:
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        if ckpt_path:
            check_checkpoint(ckpt_path, self.model)

    def after_fit(self) -> None:
        trainer, module = self.trainer, self.model
        log_dir = trainer.log_dir  # a collective under DDP: every rank asks
        if not trainer.is_global_zero:
            return
        lines = [f"Logs (TensorBoard): {log_dir}"]
        exported = getattr(module, "exported_adapter_dir", None)
        if exported is not None:
            lines.append(f"Exported adapter (peft format): {exported}")
        checkpoint = trainer.checkpoint_callback
        saved = checkpoint and (checkpoint.last_model_path or checkpoint.best_model_path)
        if saved:
            lines.append(f"Checkpoint (resume with --ckpt_path): {saved}")
        history, task = getattr(module, "history", None), getattr(module, "task", None)
        if history and task is not None:
            name = task.headline_metric.split("/")[-1]
            values = ", ".join(f"{v:.4g}" for v in history)
            lines.append(f"Held-out {name} by round: {values}")
        print("\n".join(lines))  # the CLI's own report to the user


class _ParseOnlyCLI(AirLoRACLI):
    """Parses, merges and type-checks configs (class paths resolved) without building anything."""

    def instantiate_classes(self) -> None:
        pass


def compose_config(*paths: str | Path) -> dict:
    """The merged config of ``paths`` (later files override earlier ones) as a plain dict.

    Files named inside a config (``fading: channels/tdl_a_4x2.yaml``) are inlined, and every
    default is filled in: the result is what ``lit-airlora fit --config A --config B`` builds.
    """
    import yaml

    args = [a for path in paths for a in ("--config", str(path))]
    cli = _ParseOnlyCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        run=False,
        args=args,
    )
    config = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
    config.pop("config", None)
    return config


def run(argv: list[str], on_run_start: Callable[[], None] | None = None) -> None:
    """Parse ``argv``, build and run; errors before the run starts become ``ConfigError``."""
    AirLoRACLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        save_config_kwargs={"overwrite": True},
        args=argv,
        on_run_start=on_run_start,
    )


def _save_last_by_default(trainer) -> None:
    """Lightning's default checkpoint callback keeps ``last.ckpt`` too (the README resumes it)."""
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.save_last is None:
        checkpoint.save_last = True
