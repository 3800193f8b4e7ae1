"""Stacked clients (``stacked_clients: true``) against the sequential loop: warm-round throughput.

The issue's workload (``benchmarks/peers/task.py``): 8 Shakespeare plays as clients, C of them
per round (2 and 4), 2 AdamW steps of 4 x 64 tokens each, LoRA r=8 (alpha 16) on q/v of
SmolLM2-135M, the module's default clipping (norm 1.0). One measurement is a 2-round
``FederatedLoRAModule`` fit in this process (model from the local cache, validation off):
round 1 warms, round 2 is timed from ``on_train_epoch_start`` to ``on_train_epoch_end`` (local
steps, uploads, aggregation). Per repeat and client count the two variants run back to back,
alternating which goes first; a discarded pair warms the process first. Throughput is
C x steps x batch x seq tokens over the round time; the ratio stacked / sequential is taken
per paired repeat and reported as median (min-max). Each pair's global adapters are compared
(max abs difference), so a fast but wrong stacked round shows. Target: ratio >= 1.3 at 4
clients per round.

    .venv/bin/python benchmarks/stacked_clients.py [--repeats 5] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "peers"), str(HERE.parent)]

from round_overhead import timing_trainer  # noqa: E402
from task import MODEL, TaskSettings, build_datamodule  # noqa: E402

TARGET_RATIO = 1.3


def timed_round(task: TaskSettings, stacked: bool) -> tuple[float, dict]:
    """Seconds of the warm (second) round of a 2-round fit, and the final global adapter."""
    import lightning as L

    from lit_airlora.lora.config import LoRASettings
    from lit_airlora.module import FederatedLoRAModule

    times = []

    class Timer(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            times.append(time.perf_counter() - self.start)

    L.seed_everything(task.seed, verbose=False)
    module = FederatedLoRAModule(
        **MODEL,
        lora=LoRASettings(max_rank=task.rank, alpha=task.alpha),
        learning_rate=task.learning_rate,
        export_dir=tempfile.mkdtemp(prefix="stacked_clients_"),
        cache_round0_metrics=False,
        stacked_clients=stacked,
    )
    trainer = timing_trainer([Timer()])
    trainer.fit(module, datamodule=build_datamodule(task))
    return times[-1], {n: t.detach().clone() for n, t in module.global_adapter.items()}


def measure_pair(task: TaskSettings, stacked_first: bool) -> dict:
    """Both variants back to back on ``task``; times, throughputs and adapter agreement."""
    runs = {}
    for stacked in (stacked_first, not stacked_first):
        runs[stacked] = timed_round(task, stacked)
    (seq_s, seq_adapter), (stk_s, stk_adapter) = runs[False], runs[True]
    tokens = task.clients_per_round * task.local_steps * task.batch_size * task.seq_len
    diff = max(float((stk_adapter[n] - t).abs().max()) for n, t in seq_adapter.items())
    return {
        "sequential_s": seq_s,
        "stacked_s": stk_s,
        "sequential_tokens_per_s": tokens / seq_s,
        "stacked_tokens_per_s": tokens / stk_s,
        "ratio": seq_s / stk_s,
        "max_adapter_diff": diff,
        "stacked_first": stacked_first,
    }


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(pairs: list[dict]) -> dict:
    keys = ("sequential_s", "stacked_s", "sequential_tokens_per_s", "stacked_tokens_per_s")
    summary = {key: spread([p[key] for p in pairs]) for key in (*keys, "ratio")}
    summary["max_adapter_diff"] = max(p["max_adapter_diff"] for p in pairs)
    summary["pairs"] = pairs
    return summary


def print_table(results: dict[int, dict], args) -> None:
    print(
        f"{args.repeats} paired repeats, {args.threads} torch thread(s); round = C clients x "
        f"{args.steps} steps of {args.batch_size} x {args.seq_len} tokens"
    )
    print("| C | sequential round s | stacked round s | stacked/sequential throughput | max diff |")
    print("|---|---|---|---|---|")
    for clients, s in results.items():
        seq, stk, ratio = s["sequential_s"], s["stacked_s"], s["ratio"]
        print(
            f"| {clients} | {seq['median']:.2f} ({seq['min']:.2f}-{seq['max']:.2f}) "
            f"| {stk['median']:.2f} ({stk['min']:.2f}-{stk['max']:.2f}) "
            f"| {ratio['median']:.3f} ({ratio['min']:.3f}-{ratio['max']:.3f}) "
            f"| {s['max_adapter_diff']:.1e} |"
        )
    top = max(results)
    ratio, pairs = results[top]["ratio"], results[top]["pairs"]
    reached = sum(p["ratio"] >= TARGET_RATIO for p in pairs)
    verdict = "met" if ratio["median"] >= TARGET_RATIO else "missed"
    print(
        f"target: ratio >= {TARGET_RATIO} at {top} clients per round: {verdict} by the median "
        f"({reached} of {len(pairs)} repeats reach it)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    parser.add_argument("--note", default="", help="what else ran on the machine (kept in --json)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats ({args.repeats}) must be >= 1 (5 or more for a spread).")
    import torch

    torch.set_num_threads(args.threads)

    def task(clients: int) -> TaskSettings:
        return TaskSettings(
            clients_per_round=clients,
            local_steps=args.steps,
            batch_size=args.batch_size,
            seq_len=args.seq_len,
            threads=args.threads,
        )

    load_before = os.getloadavg()
    print(f"load average before: {load_before}", flush=True)
    measure_pair(task(max(args.clients)), stacked_first=False)  # warms the process, discarded
    pairs: dict[int, list[dict]] = {c: [] for c in args.clients}
    for repeat in range(args.repeats):
        for clients in args.clients:
            pair = measure_pair(task(clients), stacked_first=repeat % 2 == 1)
            pairs[clients].append(pair)
            print(f"repeat {repeat} C={clients}: ratio {pair['ratio']:.3f}", flush=True)
    load_after = os.getloadavg()
    print(f"load average after: {load_after} ({os.cpu_count()} CPUs)")
    results = {c: summarise(p) for c, p in pairs.items()}
    print_table(results, args)
    if args.json is not None:
        machine = {
            "load_average_before": load_before,
            "load_average_after": load_after,
            "cpu_count": os.cpu_count(),
        }
        payload = {"args": vars(args), "machine": machine, "clients_per_round": results}
        args.json.write_text(json.dumps(payload, indent=1, default=str))


if __name__ == "__main__":
    main()
