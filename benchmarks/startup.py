"""Start-up of ``lit-airlora fit``: seconds from the command to the first training step.

Each repeat launches a fresh interpreter that runs the CLI exactly as ``lit-airlora fit --config
configs/quickstart.yaml`` does (``lit_airlora.cli.main``), with a few methods wrapped to stamp the
wall clock: the end of the imports, the data set-up (tokenizer, partition, tokenise, pack), the
model load (``configure_model``), the round-0 validation and the first training step, after which
the process exits. The model must be cached already (run the quickstart once). Target: first step in
under 10 s on this machine. ``--fresh-data-cache`` empties the data set-up cache first (a first run
on new data); otherwise the cache built by earlier runs is used.

Two kinds of launch are timed, alternating: ``validated`` runs the round-0 validation
(``cache_round0_metrics: false``, as a first run of new settings does) and ``cached`` reuses the
round-0 metrics an earlier run of the same settings stored (one untimed launch fills that cache
first). Where a validated launch runs the data set-up and model load again, so does a cached one.

    .venv/bin/python benchmarks/startup.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAMP_PREFIX = "STARTUP_STAMP"
PHASES = ("imports", "data", "model", "round0_validation", "first_step")
MODES = {"validated": ["--model.init_args.cache_round0_metrics", "false"], "cached": []}

# Runs in the child: wrap the phases, then call the CLI's own entry point.
CHILD = r"""
import functools, os, sys, time
def stamp(name):
    print(f"{PREFIX} {name} {time.time():.6f}", flush=True)
from lit_airlora.cli import main
from lit_airlora.cli import app  # the LightningCLI's own imports, done by main() anyway
from lit_airlora.datamodules.federated import FederatedTextDataModule
from lit_airlora.module import FederatedLoRAModule
stamp("imports")
def after(cls, name, label):
    original = getattr(cls, name)
    @functools.wraps(original)  # keeps the signature LightningCLI reads
    def wrapped(self, *a, **k):
        out = original(self, *a, **k)
        stamp(label)
        return out
    setattr(cls, name, wrapped)
after(FederatedLoRAModule, "configure_model", "model")
after(FederatedTextDataModule, "setup", "data")
after(FederatedLoRAModule, "on_train_start", "round0_validation")
def first_step(self, batch, batch_idx):
    stamp("first_step")
    os._exit(0)
FederatedLoRAModule.training_step = first_step
main(sys.argv[1:])
"""


def run_once(config: str, threads: int, root_dir: str, extra: list[str]) -> dict[str, float]:
    """Seconds from the launch to each phase's end, in one fresh process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads))
    env.setdefault("HF_HUB_OFFLINE", "1")
    command = [
        sys.executable,
        "-c",
        CHILD.replace("PREFIX", repr(STAMP_PREFIX)),
        "fit",
        "--config",
        config,
        "--trainer.logger",
        "false",
        "--trainer.enable_checkpointing",
        "false",
        "--trainer.default_root_dir",
        root_dir,
        *extra,
    ]
    start = time.time()
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    stamps = parse_stamps(done.stdout, start)
    if "first_step" not in stamps:
        raise RuntimeError(f"The run never reached its first step:\n{done.stderr[-3000:]}")
    return stamps


def parse_stamps(stdout: str, start: float) -> dict[str, float]:
    """``{phase: seconds since start}`` from the child's stamp lines."""
    stamps = {}
    for line in stdout.splitlines():
        if line.startswith(STAMP_PREFIX):
            _, name, when = line.split()
            stamps.setdefault(name, float(when) - start)
    return stamps


def summarise(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Median, min and max of each phase's end and of its own duration."""
    summary = {}
    for previous, phase in zip(("launch", *PHASES), PHASES, strict=False):
        ends = [r[phase] for r in runs]
        spans = [r[phase] - r.get(previous, 0.0) for r in runs]
        summary[phase] = {
            "at_s": statistics.median(ends),
            "at_min_s": min(ends),
            "at_max_s": max(ends),
            "duration_s": statistics.median(spans),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fresh-data-cache", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = parser.parse_args()
    root_dir = tempfile.mkdtemp(prefix="startup_")
    load_before = os.getloadavg()
    print(f"load average before: {load_before}")
    run_once(args.config, args.threads, root_dir, MODES["cached"])  # fills the round-0 cache
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode, extra in MODES.items():
            if args.fresh_data_cache:
                shutil.rmtree(data_cache_dir(), ignore_errors=True)
            runs[mode].append(run_once(args.config, args.threads, root_dir, extra))
    summaries = {mode: summarise(mode_runs) for mode, mode_runs in runs.items()}
    for mode, summary in summaries.items():
        print_summary(f"`lit-airlora fit --config {args.config}`, {mode}", summary, args.repeats)
    load_after = os.getloadavg()
    print(f"load average after: {load_after}")
    if args.json is not None:
        payload = {
            "args": vars(args),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "cpu_count": os.cpu_count(),
            "runs": runs,
            **summaries,
        }
        args.json.write_text(json.dumps(payload, indent=1, default=str))


def print_summary(title: str, summary: dict, repeats: int) -> None:
    print(f"{title}, {repeats} launches")
    print("| phase | ends at median (min-max) s | takes s |")
    print("|---|---|---|")
    for phase, v in summary.items():
        print(
            f"| {phase} | {v['at_s']:.2f} ({v['at_min_s']:.2f}-{v['at_max_s']:.2f}) "
            f"| {v['duration_s']:.2f} |"
        )
    first = summary["first_step"]["at_s"]
    print(f"first training step after {first:.2f} s (target < 10 s)")


def data_cache_dir() -> Path:
    """Where the data set-up cache lives (see ``lit_airlora.datamodules.cache``)."""
    from lit_airlora.models import cache_root

    return cache_root() / "data"


if __name__ == "__main__":
    main()
