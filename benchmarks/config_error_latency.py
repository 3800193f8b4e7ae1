"""Time from `lit-airlora fit` to its error message, for a few bad configs.

Each case runs the real command in a fresh process (imports included, as a user would) twice:
``cli`` is ``python -m lit_airlora`` (preflight checks with PyYAML, then LightningCLI), and
``lightning_cli_only`` skips the preflight and goes straight to LightningCLI, which is how every
bad value was answered before (plus the model load, for values checked after it); it ends in a
traceback (exit code 1), and its message column shows the traceback's last error line. A case that
is not refused within ``--timeout`` seconds is reported as such. Target: every ``cli`` figure
under 5 s on 2 CPU cores. The ``(parser)`` cases are mistakes the LightningCLI parser finds;
the preflight answers them from the classes' signatures read with ``ast``
(:mod:`lit_airlora.cli.static_types`). The ``(model files)`` cases depend on the model (LoRA
targets and ranks against its layers, split cut points against its blocks, the head against
the data's classes): LightningCLI alone answers them once the model's config or weights have
loaded; the preflight reads the model's ``config.json`` and safetensors header instead
(:mod:`lit_airlora.cli.model_checks`).

    .venv/bin/python benchmarks/config_error_latency.py [--repeats 1] [--baseline-repeats N]
        [--timeout 120] [--json] [--background "what else ran"]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = ["--config", str(REPO / "configs" / "quickstart.yaml")]
SPLITLLM = ["--config", str(REPO / "configs" / "splitllm.yaml")]
SFL = ["--config", str(REPO / "configs" / "sfl.yaml")]
CLASSIFICATION = ["--config", str(REPO / "configs" / "classification_bbc.yaml")]
SKIP_PREFLIGHT = "from lit_airlora.cli.app import run; import sys; run(sys.argv[1:])"


def cases(scratch: Path) -> dict[str, list[str]]:
    """Bad inputs: what each case adds to ``fit --config configs/quickstart.yaml``."""
    empty = scratch / "empty.txt"
    empty.write_text("")
    return {
        "lora.alpha=nan": ["--model.init_args.lora.alpha=nan"],
        "learning_rate=inf": ["--model.init_args.learning_rate=inf"],
        "clients_per_round>num_clients": ["--data.init_args.clients_per_round=99"],
        "empty data file": [
            "--data.init_args.source=lit_airlora.datamodules.LocalFiles",
            f"--data.init_args.source.init_args.paths=[{empty}]",
        ],
        "missing ckpt_path": ["--ckpt_path=/no/such/last.ckpt"],
        "unknown option (parser)": ["--model.init_args.bogus=1"],
        "wrong type, nested class (parser)": [
            "--data.init_args.partitioner.init_args.num_clients=eight"
        ],
        "bool expected (parser)": ["--model.init_args.keep_client_optimizer_state=maybe"],
        "no such class_path (parser)": [
            "--model.init_args.aggregator=lit_airlora.federated.aggregators.Nope"
        ],
        "target_modules match no layer (model files)": [
            "--model.init_args.lora.target_modules=[nope]"
        ],
        "max_rank above a layer's width (model files)": ["--model.init_args.lora.max_rank=300"],
        "gguf_file not in the package (model files)": ["--model.init_args.gguf_file=nope.gguf"],
        "SplitLLM cut_points beyond the blocks (model files)": [
            *SPLITLLM,
            "--model.init_args.cut_points=[2,40]",
        ],
        "SplitLLM tier without LoRA (model files)": [
            *SPLITLLM,
            "--model.init_args.lora.target_modules=[lm_head]",
        ],
        "SFL cut_point beyond the blocks (model files)": [*SFL, "--model.init_args.cut_point=40"],
        "strategy fsdp on CPU": ["--trainer.strategy=fsdp"],
        "num_labels below the classes (model files)": [
            *CLASSIFICATION,
            "--model.init_args.task.init_args.num_labels=3",
        ],
    }


def time_to_error(command: list[str], timeout: float) -> tuple[float, int | None, str]:
    """Seconds until the process ends (or ``timeout``), its exit code and first stderr line."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return timeout, None, f"no error within {timeout:.0f} s"
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if "rror" in line and "DEBUG=1" not in line]
    return time.perf_counter() - start, done.returncode, (errors or lines or [""])[-1]


def measure(args: argparse.Namespace) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, extra in cases(Path(scratch)).items():
            argv = ["fit", *QUICKSTART, *extra, f"--trainer.default_root_dir={scratch}"]
            variants = {
                "cli": [sys.executable, "-m", "lit_airlora", *argv],
                "lightning_cli_only": [sys.executable, "-c", SKIP_PREFLIGHT, *argv],
            }
            row = {"case": name}
            for variant, command in variants.items():
                repeats = args.repeats if variant == "cli" else args.baseline_repeats
                runs = [time_to_error(command, args.timeout) for _ in range(repeats or 1)]
                row[f"{variant}_s"] = statistics.median(r[0] for r in runs)
                row[f"{variant}_min_s"] = min(r[0] for r in runs)
                row[f"{variant}_max_s"] = max(r[0] for r in runs)
                row[f"{variant}_exit"] = runs[-1][1]
                row[f"{variant}_message"] = runs[-1][2][:120]
            row["speedup"] = row["lightning_cli_only_s"] / row["cli_s"]
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs per case and variant")
    parser.add_argument(
        "--baseline-repeats",
        type=int,
        default=None,
        help="runs per case of the LightningCLI-only variant (default: --repeats)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before giving up")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--background",
        default="",
        help="what else ran on the machine (recorded with the load average)",
    )
    args = parser.parse_args()
    if args.baseline_repeats is None:
        args.baseline_repeats = args.repeats
    load_before = os.getloadavg()[0]
    rows = measure(args)
    load = {"load_1min_before": load_before, "load_1min_after": os.getloadavg()[0]}
    load.update(cpu_count=os.cpu_count(), background=args.background, priority="normal")
    if args.json:
        print(json.dumps({"machine": load, "rows": rows}, indent=2))
        return
    print(f"1-min load average: {load['load_1min_before']:.1f} -> {load['load_1min_after']:.1f}")
    print(
        f"{'case':36s} {'cli (s), median [min-max]':>26s} {'LightningCLI only (s)':>26s} "
        f"{'ratio':>6s}  exit codes"
    )
    for r in rows:
        cli = f"{r['cli_s']:.2f} [{r['cli_min_s']:.2f}-{r['cli_max_s']:.2f}]"
        only = (
            f"{r['lightning_cli_only_s']:.2f} [{r['lightning_cli_only_min_s']:.2f}-"
            f"{r['lightning_cli_only_max_s']:.2f}]"
        )
        print(
            f"{r['case']:36s} {cli:>26s} {only:>26s} "
            f"{r['speedup']:6.1f}  {r['cli_exit']} / {r['lightning_cli_only_exit']}"
        )
        print(f"{'':36s} cli: {r['cli_message']}")


if __name__ == "__main__":
    main()
