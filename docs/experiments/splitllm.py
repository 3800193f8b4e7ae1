"""Perplexity per round of SplitLLM, SFL and federated LoRA on the same users, with traffic.

All three start from the quickstart base (SmolLM2-135M-Instruct, Shakespeare roles as users,
ideal links): SplitLLM (configs/splitllm.yaml: N users, E = 2 edges, one user per edge per
round, cuts [2, 10]), federated LoRA on exactly SplitLLM's users and blocks each round
(FederatedLoRAModule on ``SplitTextDataModule(stream_batches=False)``), and SFL
(configs/sfl.yaml: all N users every round, one cut at 2). Records the held-out perplexity of
the unsplit model before round 1 and after every round, and the bits of every hop and of the
adapter uploads.

    python docs/experiments/splitllm.py --rounds 5

Writes docs/figures/splitllm.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import runner

SPLITLLM, FEDLORA, SFL = "SplitLLM (E=2)", "Federated LoRA (same 2 users)", "SFL (all N users)"
#: The hops of each system (federated LoRA has none: only adapters cross the air).
HOPS = {
    SPLITLLM: (
        "user_edge/activation",
        "user_edge/gradient",
        "edge_cloud/activation",
        "edge_cloud/gradient",
    ),
    FEDLORA: (),
    SFL: ("user_server/activation", "user_server/gradient"),
}


def overrides(args: argparse.Namespace) -> dict:
    data = "data.init_args."
    return {
        "trainer.max_epochs": args.rounds,
        data + "partitioner.init_args.num_clients": args.users,
        data + "local_steps": args.local_steps,
        data + "seq_len": args.seq_len,
        data + "batch_size": args.batch_size,
        data + "max_samples_per_client": args.max_samples,
        "model.init_args.learning_rate": args.learning_rate,
    }


def configs(args: argparse.Namespace) -> list[tuple[str, dict, dict]]:
    from lit_airlora.cli import compose_config

    base = runner.CONFIGS / "quickstart.yaml"
    scale = overrides(args)
    fedlora = compose_config(base, runner.CONFIGS / "splitllm.yaml")
    fedlora["model"] = compose_config(base)["model"]  # unsplit module on SplitLLM's data
    fedlora["data"]["init_args"]["stream_batches"] = False
    return [
        (SPLITLLM, compose_config(base, runner.CONFIGS / "splitllm.yaml"), scale),
        (FEDLORA, fedlora, scale),
        (
            SFL,
            compose_config(base, runner.CONFIGS / "sfl.yaml"),
            {
                **scale,
                "data.init_args.clients_per_round": args.users,
            },
        ),
    ]


def run_all(args: argparse.Namespace, out: Path) -> dict[str, dict]:
    results = json.loads(out.read_text())["results"] if args.resume and out.exists() else {}
    for name, config, scale in configs(args):
        if name in results:
            continue
        slug = name.split(" ")[0].lower()
        results[name] = runner.run(config, scale, f"splitllm_{slug}", args.threads)
        out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1, default=str))
    return results


def traffic(result: dict, keys: tuple[str, ...]) -> dict[str, float]:
    """Total bits over the run of each hop and of the adapter uploads."""
    totals = {k: sum(r.get(f"comm/{k}_bits", 0.0) for r in result["rounds"]) for k in keys}
    totals["adapter uploads"] = sum(r.get("comm/uplink_bits", 0.0) for r in result["rounds"])
    return totals


def table(results: dict[str, dict]) -> str:
    rounds = max(len(r["perplexity"]) for r in results.values())
    head = "| round | " + " | ".join(results) + " |"
    lines = [head, "|" + "---|" * (len(results) + 1)]
    for t in range(rounds):
        cells = [
            f"{r['perplexity'][t]:.2f}" if t < len(r["perplexity"]) else ""
            for r in results.values()
        ]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines += ["", "| system | hop / payload | Mbit over the run |", "|---|---|---|"]
    for name, result in results.items():
        for key, bits in traffic(result, HOPS[name]).items():
            lines.append(f"| {name} | {key} | {bits / 1e6:.2f} |")
    lines += ["", "| system | wall time (s) |", "|---|---|"]
    lines += [f"| {n} | {r['wall_s']:.0f} |" for n, r in results.items()]
    return "\n".join(lines)


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, result in results.items():
        axis.plot(range(len(result["perplexity"])), result["perplexity"], marker="o", label=name)
    axis.set_xlabel("round (0 = before training)")
    axis.set_ylabel("held-out perplexity (unsplit model)")
    axis.set_title("SplitLLM vs SFL vs federated LoRA (short run)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--local-steps", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-samples", type=int, default=40, help="max samples per user")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="reuse runs already in the JSON")
    parser.add_argument("--out", type=Path, default=runner.FIGURES)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = run_all(args, args.out / "splitllm.json")
    text = table(results)
    (args.out / "splitllm.md").write_text(text + "\n")
    plot(results, args.out / "splitllm.png")
    print(text)


if __name__ == "__main__":
    main()
