"""lit-airlora against Flower's simulation engine and a bare PyTorch + peft loop, side by side.

The same federated LoRA task (see ``task.py``: 8 Shakespeare plays as clients, 4 per round, 2
AdamW steps of 4 x 64 tokens, LoRA r=8 on q/v of SmolLM2-135M, size-weighted FedAvg, held-out
perplexity after every round, the same seeds) runs three ways, each in a fresh spawned process,
the three interleaved in every repetition (bare, lit, flower; bare, lit, flower; ...). Measured
per run: the warm round (median of rounds 2..), the time per round including start-up (launch to
last round end, divided by the rounds), start-up alone, and peak memory: PSS summed over the
process tree (Ray's GCS, raylet and worker processes included) sampled every 0.2 s. The table
gives median (min-max) over repetitions and the paired ratios to the bare loop. Targets for
lit-airlora: warm round <= 1.05x, with start-up <= 1.15x, memory <= 1.1x the bare loop, and
below Flower on all three. The three perplexity curves must agree within ``--tolerance``
(relative, per round): the run fails otherwise. Needs the ``bench`` extra
(``pip install -e .[bench]``, Flower 1.42 with Ray).

    .venv/bin/python benchmarks/peers/run.py [--repeats 3] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT)]

from memory import PeakTreeMemory  # noqa: E402
from stats import check_targets, max_relative_gap, round_times, summarise  # noqa: E402
from task import PLAYS, TaskSettings  # noqa: E402

VARIANTS = ("bare", "lit", "flower")
TARGETS = {"warm_round_s": 1.05, "round_with_startup_s": 1.15, "peak_pss_mb": 1.1}


def _child(variant: str, task: TaskSettings, queue, num_actors: int) -> None:
    sys.path[:0] = [str(HERE), str(ROOT)]
    if variant == "bare":
        from bare import run
    elif variant == "lit":
        from lit import run
    else:
        from flower_app import run

        run(task, queue, num_actors)
        return
    run(task, queue)


def measure(variant: str, task: TaskSettings, num_actors: int) -> dict:
    """One run of ``variant`` in a fresh process: its times, curve and peak tree PSS."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    launch = time.time()
    process = ctx.Process(target=_child, args=(variant, task, queue, num_actors))
    process.start()
    with PeakTreeMemory(process.pid) as memory:
        result = queue.get(timeout=1800)
        process.join(timeout=120)
    if process.exitcode != 0:
        raise RuntimeError(f"The {variant} run exited with code {process.exitcode}.")
    times = round_times(launch, result["round_end"])
    return {
        **times,
        "peak_pss_mb": memory.peak_bytes / 2**20,
        "peak_processes": memory.peak_processes,
        "perplexity": result["perplexity"],
    }


def warm_data_cache(task: TaskSettings) -> None:
    """Build the data set-up cache once, untimed, so that no variant pays for it."""
    from task import MODEL, build_datamodule

    from lit_airlora.models import load_tokenizer

    build_datamodule(task, load_tokenizer(MODEL["model"], MODEL["gguf_file"]))


def print_table(summary: dict, runs: dict) -> None:
    print("| variant | warm round s | round incl. start-up s | start-up s | peak PSS MB |")
    print("|---|---|---|---|---|")
    for name, v in summary["variants"].items():
        cells = [
            f"{v[m]['median']:.2f} ({v[m]['min']:.2f}-{v[m]['max']:.2f})"
            for m in ("warm_round_s", "round_with_startup_s", "startup_s")
        ]
        memory = v["peak_pss_mb"]
        cells.append(f"{memory['median']:.0f} ({memory['min']:.0f}-{memory['max']:.0f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name, ratios in summary["ratios"].items():
        cells = [
            f"{m} {r['median']:.3f} ({r['min']:.3f}-{r['max']:.3f})" for m, r in ratios.items()
        ]
        print(f"{name}/bare, paired: " + ", ".join(cells))
    for name in runs:
        print(f"perplexity {name}: {[round(p, 4) for p in runs[name][0]['perplexity']]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--flower-actors", type=int, default=1, help="Ray actors (1 CPU each)")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="relative, per round")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if "bare" not in args.variants:
        parser.error("--variants must include bare (the baseline of every ratio)")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the children and Ray
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    task = TaskSettings(rounds=args.rounds, threads=args.threads)
    warm_data_cache(task)  # every variant then loads the same clients from the set-up cache
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    for repeat in range(args.repeats):
        for variant in args.variants:
            runs[variant].append(measure(variant, task, args.flower_actors))
            print(f"repeat {repeat + 1} {variant}: {runs[variant][-1]}", flush=True)
    summary = summarise(runs)
    gaps = {
        name: max(
            max_relative_gap(a["perplexity"], b["perplexity"])
            for a, b in zip(runs[name], runs["bare"], strict=True)
        )
        for name in runs
        if name != "bare"
    }
    agree = all(gap <= args.tolerance for gap in gaps.values())
    targets = check_targets(summary, TARGETS) if "lit" in runs else []
    print(
        f"{len(PLAYS)} plays as clients, {task.clients_per_round} per round, "
        f"{task.local_steps} steps of {task.batch_size} x {task.seq_len} tokens, "
        f"{args.rounds} rounds, {args.repeats} repeats, {args.threads} thread(s) per process"
    )
    print_table(summary, runs)
    print(
        f"perplexity curves: max relative gap to bare {gaps} (tolerance {args.tolerance}): "
        f"{'agree' if agree else 'DISAGREE'}"
    )
    for row in targets:
        print(f"target {row['target']}: {row['ratio']:.3f} {'met' if row['met'] else 'MISSED'}")
    if args.json is not None:
        payload = {
            "args": vars(args),
            "task": task.as_dict(),
            "plays": PLAYS,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "cpu_count": os.cpu_count(),
            "summary": summary,
            "perplexity_max_relative_gap": gaps,
            "perplexity_curves_agree": agree,
            "targets": targets,
            "runs": runs,
        }
        args.json.write_text(json.dumps(payload, indent=1, default=str))
    if not agree:
        sys.exit("The perplexity curves disagree: the three variants did not run the same task.")


if __name__ == "__main__":
    main()
