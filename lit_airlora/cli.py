"""``lit-airlora``: the LightningCLI entry point (``fit``, ``validate``, ``test``, ``predict``).

Experiments differ only in YAML: the model, datamodule, callbacks (channels, compression, rank
policies) and aggregator are chosen by ``class_path``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

DEBUG_ENV = "LIT_AIRLORA_DEBUG"

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
    """LightningCLI with the project's trainer defaults and a closing summary after ``fit``."""

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
        history = getattr(module, "perplexity_history", None)
        if history:
            lines.append("Held-out perplexity by round: " + ", ".join(f"{p:.2f}" for p in history))
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


def main(args: list[str] | None = None) -> None:
    """Run the CLI; configuration errors end with a one-paragraph message, not a traceback."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["report"]:  # not a Trainer subcommand: no LightningCLI for it
        from lit_airlora.report.command import main as report_main

        sys.exit(report_main(argv[1:]))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        AirLoRACLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except (ValueError, TypeError) as err:
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"lit-airlora: error: {err}\n(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        sys.exit(2)
