"""Shared helpers of the experiment scripts: run a config with overrides, collect per-round metrics.

A run loads a YAML file of ``configs/`` (the same classes ``lit-airlora fit`` builds), applies
dotted overrides (``data.init_args.seq_len``), instantiates it through the project's CLI without
running it, trains with a recorder callback, and returns the held-out perplexity by round and
every round's metrics (what the module logs: ``channel/*``, ``comm/*``, ``tsfa/*``, ...).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
FIGURES = REPO / "docs" / "figures"
SCRATCH = Path(os.environ.get("LIT_AIRLORA_SCRATCH", tempfile.gettempdir())) / "lit_airlora_exp"


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments that scale every run of an experiment (defaults: the budget of docs/results.md)."""
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8, help="clients in the federation")
    parser.add_argument("--clients-per-round", type=int, default=4)
    parser.add_argument("--local-steps", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-samples", type=int, default=8, help="max samples per client")
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3, help="local learning rate")
    parser.add_argument(
        "--targets", nargs="+", default=["q_proj", "v_proj"], help="LoRA target modules"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")


def scale_overrides(args: argparse.Namespace) -> dict:
    """Dotted overrides applying the scale arguments to a quickstart-style config."""
    data = "data.init_args."
    return {
        "trainer.max_epochs": args.rounds,
        data + "partitioner.init_args.num_clients": args.clients,
        data + "clients_per_round": args.clients_per_round,
        data + "local_steps": args.local_steps,
        data + "seq_len": args.seq_len,
        data + "batch_size": args.batch_size,
        data + "max_samples_per_client": args.max_samples,
        data + "val_fraction": args.val_fraction,
        "model.init_args.learning_rate": args.lr,
        "model.init_args.lora.target_modules": list(args.targets),
    }


def seed_overrides(config: dict, seed: int) -> dict:
    """Dotted overrides setting every seed of a config (run, model, data, callbacks) to ``seed``."""
    out = {
        "seed_everything": seed,
        "model.init_args.seed": seed,
        "data.init_args.seed": seed,
    }
    for i, callback in enumerate((config.get("trainer") or {}).get("callbacks") or []):
        if "seed" in callback.get("init_args", {}):
            out[f"trainer.callbacks.{i}.init_args.seed"] = seed
    return out


def load_config(name: str) -> dict:
    """A config of ``configs/`` as a dict (a system file is composed on the quickstart base)."""
    from lit_airlora.cli import compose_config

    path = CONFIGS / name
    is_base = "model" in (yaml.safe_load(path.read_text()) or {})
    return compose_config(path) if is_base else compose_config(CONFIGS / "quickstart.yaml", path)


def get_dotted(config: dict, key: str):
    """``config["a"]["b"]`` from ``"a.b"``; ``callbacks.0.x`` indexes lists (KeyError if absent)."""
    node = config
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def set_dotted(config: dict, key: str, value) -> None:
    """Set ``config["a"]["b"]`` from ``"a.b"``; ``callbacks.0.x`` indexes lists."""
    *parents, last = key.split(".")
    node = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def prepared_config(config: dict, overrides: dict, run_dir: Path) -> dict:
    """The config with overrides and quiet, file-free trainer settings for experiments."""
    config = copy.deepcopy(config)
    trainer = config.setdefault("trainer", {})
    trainer.update(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
    )
    config["model"]["init_args"]["export_dir"] = str(run_dir / "adapter")
    for key, value in overrides.items():
        set_dotted(config, key, value)
    return config


def run(
    config: dict, overrides: dict, name: str, threads: int = 2, after_fit=None, observers=()
) -> dict:
    """Train one config; returns perplexity by round, per-round metrics, bits and wall time,
    and what ``after_fit(cli)`` returns (a dict) when given. ``observers`` are extra callbacks
    (e.g. stage observers adding round metrics), appended after the config's."""
    import torch

    from lit_airlora.cli import TRAINER_DEFAULTS, AirLoRACLI

    torch.set_num_threads(threads)
    run_dir = SCRATCH / name
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(prepared_config(config, overrides, run_dir)))
    cli = AirLoRACLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        trainer_defaults=TRAINER_DEFAULTS,
        save_config_callback=None,
        args=["--config", str(path)],
    )
    recorder = RoundRecorder()
    cli.trainer.callbacks.extend([*observers, recorder])
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    wall_s = time.perf_counter() - start
    return {
        **(after_fit(cli) if after_fit is not None else {}),
        "name": name,
        "perplexity": list(cli.model.perplexity_history),
        "history": list(cli.model.history),  # the task's headline metric, round 0 first
        "rounds": recorder.rounds,
        "total_bits": float(cli.model.ledger.total_bits),
        "adapter_shapes": {k: list(v.shape) for k, v in cli.model.global_adapter.items()},
        "wall_s": wall_s,
    }


class RoundRecorder(L.Callback):
    """Keeps a copy of the module's round metrics at the end of every round (after validation),
    its validation metrics and what a rank policy logged (``policy/*``)."""

    def __init__(self) -> None:
        self.rounds: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = {k: float(v) for k, v in pl_module.round_metrics.items()}
        metrics.update({k: float(v) for k, v in pl_module.last_metrics.items() if "val/" in k})
        metrics.update(  # what a rank policy logged for the round (policy/mean_rank, bound/*)
            {
                k: float(v)
                for k, v in trainer.callback_metrics.items()
                if k.startswith("policy/") and v.numel() == 1
            }
        )
        self.rounds.append(metrics)
        ppl = metrics.get("val/perplexity", float("nan"))
        print(  # progress of long runs: round, held-out perplexity, CPU seconds so far
            f"round {len(self.rounds)}: val ppl {ppl:.2f}, cpu {time.process_time():.0f} s",
            file=sys.stderr,
            flush=True,
        )


def mean_metric(result: dict, key: str) -> float:
    """Mean of a per-round metric over the rounds that logged it (NaN if none did)."""
    values = [r[key] for r in result["rounds"] if key in r]
    return sum(values) / len(values) if values else float("nan")
