"""Shipped configs as users run them: the command in each file's header, composed and built."""

from __future__ import annotations

import re
from pathlib import Path

from jsonargparse import ArgumentParser
from lightning.pytorch import Callback, LightningDataModule, LightningModule

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
_COMMAND = re.compile(r"^#\s+lit-airlora fit((?: --config configs/\S+\.yaml)+)", re.MULTILINE)


def header_command(name: str) -> list[Path]:
    """The config files of the ``lit-airlora fit`` command in the header of ``configs/<name>``."""
    text = (REPO / "configs" / name).read_text()
    assert text.startswith("#"), f"configs/{name} must start with a comment"
    for match in _COMMAND.finditer(text.split("\n\n")[0]):
        paths = re.findall(r"--config (\S+)", match.group(1))
        if f"configs/{name}" in paths:
            return [REPO / p for p in paths]
    raise AssertionError(f"configs/{name}: no `lit-airlora fit --config ...` command naming it")


def composed(name: str) -> dict:
    """The merged config the header command of ``configs/<name>`` builds (defaults filled in)."""
    from lit_airlora.cli import compose_config

    return compose_config(*header_command(name))


def config_callbacks(name: str) -> list[Callback]:
    """The trainer callbacks of ``configs/<name>``, built (model and data are not loaded)."""
    parser = ArgumentParser()
    parser.add_argument("--callbacks", type=list[Callback])
    parsed = parser.parse_object({"callbacks": composed(name)["trainer"]["callbacks"]})
    return parser.instantiate_classes(parsed).callbacks


def build_cli(name: str, tiny_llama_dir: str, tmp_path, *extra: str):
    """The CLI of ``configs/<name>``'s header command with a tiny model, built but not run."""
    from lit_airlora.cli import TRAINER_DEFAULTS, AirLoRACLI

    args = [a for path in header_command(name) for a in ("--config", str(path))]
    args += [
        f"--model.init_args.model={tiny_llama_dir}",
        "--model.init_args.gguf_file=null",
        f"--trainer.default_root_dir={tmp_path}",
        *extra,
    ]
    return AirLoRACLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        run=False,
        args=args,
    )
