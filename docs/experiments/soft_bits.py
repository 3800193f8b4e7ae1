"""Perplexity against uplink bits: FedAvg-LoRA, element-wise top-k, SOFT and SOFT + TSFA.

Runs on the quickstart federation, all for the same number of rounds: FedAvg-LoRA without
compression (configs/quickstart.yaml), top-k (configs/topk.yaml), SOFT (configs/soft.yaml),
SOFT + TSFA (configs/soft_tsfa.yaml), and top-k with its ``rho`` chosen so that a client's
upload costs what a SOFT upload measured (same bit budget). Checks the claim of Kim and Choi
(arXiv 2505.00333): SOFT(+TSFA) within 2% of FedAvg's perplexity with >= 60% fewer bits.

    python docs/experiments/soft_bits.py --rounds 4

Writes docs/figures/soft_bits.{json,md,png} and docs/figures/tsfa_latency.png.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import runner

FEDAVG, TOPK, SOFT, TSFA, TOPK_MATCHED = (
    "FedAvg-LoRA",
    "Top-k (rho 0.6)",
    "SOFT (rho 0.6)",
    "SOFT + TSFA",
    "Top-k at SOFT's budget",
)
FLOAT32_BITS = 32


def topk_bits(rho: float, shapes: list[list[int]]) -> int:
    """One top-k upload's bits: float32 values plus min(list, bitmap) positions per tensor."""
    total = 0
    for shape in shapes:
        numel = math.prod(shape)
        kept = min(numel, math.ceil(round((1.0 - rho) * numel, 9)))
        positions = 0 if kept == 0 else min(kept * math.ceil(math.log2(numel)), numel)
        total += FLOAT32_BITS * kept + positions
    return total


def matched_rho(target_bits: float, shapes: list[list[int]], step: float = 1e-3) -> float:
    """The top-k ratio whose upload cost is closest to ``target_bits``."""
    grid = [i * step for i in range(round(1 / step))]
    return min(grid, key=lambda rho: abs(topk_bits(rho, shapes) - target_bits))


def bits_per_client(result: dict) -> float:
    """Mean uplink bits of one client's upload over the rounds."""
    return runner.mean_metric(result, "comm/uplink_bits_per_client")


def run_all(args: argparse.Namespace, out: Path) -> dict[str, dict]:
    """Every run, saved to ``out`` after each one (``--resume`` reuses those present)."""
    results = json.loads(out.read_text())["results"] if args.resume and out.exists() else {}
    scale = runner.scale_overrides(args)
    plan = [(FEDAVG, "quickstart.yaml", {}), (SOFT, "soft.yaml", {})]
    plan += [(TOPK, "topk.yaml", {}), (TSFA, "soft_tsfa.yaml", {}), (TOPK_MATCHED, None, None)]
    for name, config, extra in plan:
        if name in results:
            continue
        if name == TOPK_MATCHED:
            config, extra = "topk.yaml", _matched_override(results)
        tag = "soft_bits_" + config.removesuffix(".yaml") + ("_matched" if extra else "")
        result = runner.run(runner.load_config(config), {**scale, **extra}, tag, args.threads)
        results[name] = {**result, **extra}
        out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1, default=str))
    return results


def _matched_override(results: dict) -> dict:
    shapes = list(results[FEDAVG]["adapter_shapes"].values())
    rho = matched_rho(bits_per_client(results[SOFT]), shapes)
    return {"trainer.callbacks.0.init_args.encoder.init_args.rho": rho}


def table(results: dict[str, dict]) -> str:
    """Markdown table and the verdict on the paper's claim."""
    base = results[FEDAVG]
    lines = [
        "| method | final perplexity | vs FedAvg | total uplink bits | bits vs FedAvg |",
        "|---|---|---|---|---|",
    ]
    for name, result in results.items():
        ppl, bits = result["perplexity"][-1], result["total_bits"]
        lines.append(
            f"| {_label(name, result)} | {ppl:.2f} | {ppl / base['perplexity'][-1] - 1:+.1%} "
            f"| {bits:.3e} | {bits / base['total_bits'] - 1:+.1%} |"
        )
    lines += ["", f"Perplexity before round 1: {base['perplexity'][0]:.2f}."]
    lines += [_verdict(name, results[name], base) for name in (SOFT, TSFA) if name in results]
    return "\n".join(lines) + "\n"


def _label(name: str, result: dict) -> str:
    rho = result.get("trainer.callbacks.0.init_args.encoder.init_args.rho")
    return name if rho is None else f"{name} (rho {rho:.3f})"


def _verdict(name: str, result: dict, base: dict) -> str:
    within = result["perplexity"][-1] <= 1.02 * base["perplexity"][-1]
    saving = 1 - result["total_bits"] / base["total_bits"]
    holds = within and saving >= 0.6
    return (
        f"- {name}: perplexity within 2% of FedAvg: {within}; bit saving {saving:.1%} "
        f"(>= 60%: {saving >= 0.6}); claim holds: {holds}."
    )


def plot_bits(results: dict[str, dict], path: Path) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for (name, result), marker in zip(results.items(), "osv^D", strict=False):
        bits = [0.0] + [r["comm/uplink_bits_cumulative"] for r in result["rounds"]]
        axis.plot(bits, result["perplexity"], marker=marker, label=_label(name, result))
    axis.set_xlabel("cumulative uplink bits")
    axis.set_ylabel("held-out perplexity")
    axis.set_title("Perplexity after each round against the bits sent so far")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_tsfa(result: dict, budget_s: float, path: Path) -> None:
    plt = _pyplot()
    rounds = [r for r in result["rounds"] if "tsfa/round_latency_s" in r]
    x = list(range(1, len(rounds) + 1))
    figure, axis = plt.subplots(figsize=(6.4, 3.8))
    axis.plot(x, [r["tsfa/round_latency_s"] for r in rounds], marker="o", label="round latency")
    axis.plot(x, [r["tsfa/avg_latency_s"] for r in rounds], marker="s", label="running average")
    axis.axhline(budget_s, color="black", linestyle="--", label="T_bar (budget)")
    for xi, r in zip(x, rounds, strict=True):
        axis.annotate(f"rho={r['tsfa/rho']:.1f}", (xi, r["tsfa/round_latency_s"]), fontsize=7)
    axis.set_xlabel("round")
    axis.set_ylabel("latency (s)")
    axis.set_title("TSFA: modelled round latency against the long-term budget")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=runner.FIGURES)
    parser.add_argument("--resume", action="store_true", help="reuse runs in the JSON")
    runner.add_scale_arguments(parser)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = run_all(args, args.out / "soft_bits.json")
    text = table(results)
    (args.out / "soft_bits.md").write_text(text)
    plot_bits(results, args.out / "soft_bits.png")
    budget = runner.load_config("soft_tsfa.yaml")["trainer"]["callbacks"][1]["init_args"]
    plot_tsfa(results[TSFA], budget["latency_budget_s"], args.out / "tsfa_latency.png")
    print(text)


if __name__ == "__main__":
    main()
