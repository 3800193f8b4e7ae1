"""One comparison across the five systems and ideal FedAvg-LoRA, on one model, data and channel.

AirFL-LoRA (configs/airfl_lora_mimo.yaml), SOFT + TSFA (soft_tsfa.yaml), AirLLM's PPO + DDIM
rank policy (airllm_hierarchical.yaml) on the federated clients, pAirZero (pairzero_analog.yaml
on the zeroth-order task), SplitLLM (splitllm.yaml + splitllm_wireless.yaml: E = 2 edges, so 2
users per round) and ideal FedAvg-LoRA (quickstart.yaml), each composed
on the quickstart base: SmolLM2-135M-Instruct, LoRA on q/v, Shakespeare roles as clients, the
same clients per round, local steps, batch and sequence length (the scale flags), and every
uplink's mean SNR drawn from the same distribution (uniform in [--snr-low-db, --snr-high-db],
once per client from a generator seeded by the client id, so client k has the same mean SNR in
every system; the ideal run has no channel). Per system: final held-out perplexity, uplink bits,
uplink airtime and energy, peak memory of one user device, wall time, in one table and one
figure. Ideal FedAvg-LoRA runs once more per ``--noise-seeds`` seed (the LoRA initialisation and
the round's random draws change; data, clients and held-out set stay): the spread of its final
perplexity is the yardstick for whether two systems' quality differs beyond seed noise.

Peak memory per device is counted on the trained model, the same way for every system: the
frozen weights the device holds, its adapter with gradients and AdamW state (none for
zeroth-order clients: no backward, no optimizer), and the activations autograd saves for one
local batch (``lit_airlora.split.memory.measure_tier``; SplitLLM's user holds only the layers
before its first cut).

    python docs/experiments/all_systems.py --rounds 8 --threads 1

Writes docs/figures/all_systems.{json,md,png}, with the wall time, the load average and the
process's nice level. The defaults are a short run sized for a shared 2-core machine; the scale
flags run it longer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import runner

IDEAL, AIRFL, SOFT, AIRLLM, PAIRZERO, SPLIT = (
    "FedAvg-LoRA (ideal)",
    "AirFL-LoRA",
    "SOFT + TSFA",
    "AirLLM",
    "pAirZero",
    "SplitLLM",
)
SYSTEMS = {
    IDEAL: ["quickstart.yaml"],
    AIRFL: ["quickstart.yaml", "airfl_lora_mimo.yaml"],
    SOFT: ["quickstart.yaml", "soft_tsfa.yaml"],
    AIRLLM: ["quickstart.yaml", "airllm_hierarchical.yaml"],
    PAIRZERO: [
        "quickstart.yaml",
        "pairzero/task.yaml",
        "pairzero/zeroth_order.yaml",
        "pairzero_analog.yaml",
    ],
    SPLIT: ["quickstart.yaml", "splitllm.yaml", "splitllm_wireless.yaml"],
}
#: Where each system's uplink mean-SNR model sits in its config.
SNR_PATHS = {
    IDEAL: [],
    AIRFL: ["trainer.callbacks.0.init_args.large_scale"],
    SOFT: [
        "trainer.callbacks.1.init_args.large_scale",
        "trainer.callbacks.2.init_args.large_scale",
    ],
    AIRLLM: ["trainer.callbacks.0.init_args.large_scale"],
    PAIRZERO: ["trainer.callbacks.0.init_args.large_scale"],
    SPLIT: ["model.init_args.uplink.init_args.large_scale"],
}
#: SNR models left as configured: SplitLLM's downlink (gradients back to the users; the other
#: systems model no downlink).
KEPT_SNR_PATHS = {SPLIT: ["model.init_args.downlink.init_args.large_scale"]}
#: Per-round metrics that count a user's uplink (SplitLLM: its activations to the edge too).
UPLINK = {
    "bits": ("comm/uplink_bits", "comm/user_edge/activation_bits"),
    "airtime_s": ("comm/airtime_s", "comm/user_edge/activation_airtime_s"),
    "energy_j": ("comm/energy_j", "comm/user_edge/activation_energy_j"),
}


def noise_name(seed: int, system: str = IDEAL) -> str:
    """Result name of ``system`` run again with ``seed`` (ideal FedAvg-LoRA's: the yardstick)."""
    return f"{system}, seed {seed}"


def overrides(args: argparse.Namespace, system: str, seed: int | None = None) -> dict:
    """The shared scale, seeds and SNR distribution for one system's config (``seed``: the run
    and module seeds of a seed-noise rerun; data, clients and held-out set unchanged)."""
    out = runner.scale_overrides(args)
    if seed is not None:
        out.update({"seed_everything": seed, "model.init_args.seed": seed})
    out["trainer.check_val_every_n_epoch"] = 1
    snr = {
        "class_path": "lit_airlora.channel.large_scale.UniformSNR",
        "init_args": {"low_db": args.snr_low_db, "high_db": args.snr_high_db, "seed": 0},
    }
    for path in SNR_PATHS[system]:
        out[path] = snr
    if system == SPLIT:  # SplitLLM's users take turns through E edges: E clients per round
        out.pop("data.init_args.clients_per_round")
    return out


def compose(system: str) -> dict:
    from lit_airlora.cli import compose_config

    return compose_config(*(runner.CONFIGS / name for name in SYSTEMS[system]))


def device_memory(module, args: argparse.Namespace) -> dict:
    """Peak bytes of one user device (see the module docstring), by term."""
    import torch

    from lit_airlora.split.memory import measure_tier, tier_frozen_tensors, tier_runner

    g = torch.Generator().manual_seed(0)
    vocab = module.model.config.vocab_size if hasattr(module.model, "config") else None
    vocab = vocab or module.parts.config.vocab_size
    ids = torch.randint(0, vocab, (args.batch_size, args.seq_len), generator=g)  # (B, T)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    every_weight = [*module.model.parameters(), *module.model.buffers()]
    if hasattr(module, "parts"):  # SplitLLM: the user tier (layers before the first cut)
        spec = module.specs[0]
        lora = [
            p
            for n, p in module.model.named_parameters()
            if "lora_" in n and any(f".layers.{b}." in n for b in range(spec.start, spec.end))
        ]
        frozen = tier_frozen_tensors(module.parts, spec)
        run_stream = tier_runner(module.parts, spec, batch, g)
    else:
        lora = [p for n, p in module.model.named_parameters() if "lora_" in n]
        frozen = [p for n, p in module.model.named_parameters() if "lora_" not in n]
        frozen += list(module.model.buffers())

        def run_stream(_k):
            return module.task.loss(module.model, batch), None

    with torch.enable_grad():
        for p in lora:
            p.requires_grad_(True)
        memory = measure_tier("device", frozen, lora, run_stream, 1, exclude=every_weight)
    terms = memory.as_dict()
    if getattr(module, "zeroth_order", None) is not None:  # forward only, no optimizer
        terms.update(gradient_bytes=0, optimizer_bytes=0, activation_bytes=0)
        terms["peak_bytes"] = terms["frozen_bytes"] + terms["adapter_bytes"]
    return terms


def planned_runs(args: argparse.Namespace) -> list[tuple[str, str, int | None]]:
    """``(result name, system, seed or None)`` of every run, the seed reruns last (ideal
    FedAvg-LoRA with ``--noise-seeds``, the ``--rerun-systems`` with ``--rerun-seeds``)."""
    runs = [(system, system, None) for system in args.systems]
    if IDEAL in args.systems:
        runs += [(noise_name(seed), IDEAL, seed) for seed in args.noise_seeds]
    for system in args.rerun_systems:
        runs += [(noise_name(seed, system), system, seed) for seed in args.rerun_seeds]
    return runs


def machine() -> dict:
    """What the run shared the machine with: load averages, nice level, torch threads."""
    import torch

    return {
        "load_average": list(os.getloadavg()),
        "nice": os.nice(0),
        "torch_threads": torch.get_num_threads(),
    }


def run_all(args: argparse.Namespace, out: Path) -> dict[str, dict]:
    payload = json.loads(out.read_text()) if args.resume and out.exists() else {}
    results = payload.get("results", {})
    for name, system, seed in planned_runs(args):
        if name in results:
            continue
        slug = name.split(" ")[0].lower().replace("-", "_") + ("" if seed is None else f"_{seed}")
        before = machine()
        results[name] = runner.run(
            compose(system),
            overrides(args, system, seed),
            f"all_systems_{slug}",
            args.threads,
            after_fit=lambda cli: {"device_memory": device_memory(cli.model, args)},
        )
        results[name]["machine"] = {"before": before, "after": machine()}
        payload = {"args": vars(args), "results": results}
        out.write_text(json.dumps(payload, indent=1, default=str))
    return results


def uplink_total(result: dict, what: str) -> float:
    """Sum over rounds of the uplink metrics of ``what`` (NaN when the system logs none)."""
    values = [r[k] for r in result["rounds"] for k in UPLINK[what] if k in r]
    return sum(values) if values else math.nan


def summary_rows(results: dict[str, dict]) -> list[dict]:
    return [
        {
            "system": name,
            "final_perplexity": r["perplexity"][-1],
            "uplink_mbit": uplink_total(r, "bits") / 1e6,
            "airtime_s": uplink_total(r, "airtime_s"),
            "energy_j": uplink_total(r, "energy_j"),
            "device_peak_mib": r["device_memory"]["peak_bytes"] / 2**20,
            "wall_s": r["wall_s"],
        }
        for name, r in results.items()
    ]


def seed_spread(rows: list[dict]) -> float:
    """Spread (max - min) of ideal FedAvg-LoRA's final perplexity over its seeds (NaN: one)."""
    ideal = [r["final_perplexity"] for r in rows if r["system"].startswith(IDEAL)]
    return max(ideal) - min(ideal) if len(ideal) > 1 else math.nan


def verdict(row: dict, ideal: float, spread: float) -> str:
    """The final-perplexity gap to ideal FedAvg-LoRA (seed 0), and whether it exceeds the spread."""
    if row["system"].startswith(IDEAL):
        return "(yardstick)"
    gap = row["final_perplexity"] - ideal
    if math.isnan(spread):
        return f"{gap:+.2f}"
    return f"{gap:+.2f} ({'beyond' if abs(gap) > spread else 'within'} seed spread)"


def table(rows: list[dict], args: argparse.Namespace) -> str:
    ideal = next((r["final_perplexity"] for r in rows if r["system"] == IDEAL), math.nan)
    spread = seed_spread(rows)
    seeds = [r["system"].rsplit(" ", 1)[-1] for r in rows if r["system"].startswith(f"{IDEAL},")]
    lines = [
        f"{args.rounds} rounds, {args.clients} clients ({args.clients_per_round} per "
        f"round), {args.local_steps} local step(s) of {args.batch_size} x {args.seq_len} tokens, "
        f"uplink mean SNR uniform in [{args.snr_low_db:g}, {args.snr_high_db:g}] dB, seed "
        f"{args.seeds[0]}; ideal FedAvg-LoRA also with seeds {', '.join(seeds)} (spread of its "
        f"final perplexity: {_cell(spread, '.2f')}).",
        "",
        "| system | final perplexity | vs ideal | uplink Mbit | uplink airtime s "
        "| uplink energy J | peak memory per device MiB | wall time s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            f"{row['final_perplexity']:.2f}",
            verdict(row, ideal, spread),
            _cell(row["uplink_mbit"], ".4g"),
            _cell(row["airtime_s"], ".4g"),
            _cell(row["energy_j"], ".4g"),
            f"{row['device_peak_mib']:.0f}",
            f"{row['wall_s']:.0f}",
        ]
        lines.append(f"| {row['system']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def plot(results: dict[str, dict], rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    _plot_quality(left, results)
    rows = [row for row in rows if ", seed " not in row["system"]]
    names = [row["system"] for row in rows]
    right.barh(names, [row["device_peak_mib"] for row in rows], color="tab:gray")
    for i, row in enumerate(rows):
        right.text(row["device_peak_mib"], i, f" {_cell(row['uplink_mbit'], '.3g')} Mbit up")
    right.set_xlim(0, 1.35 * max(row["device_peak_mib"] for row in rows))
    right.set_xlabel("peak memory per device (MiB)")
    right.set_title("Per-device memory, with uplink traffic")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _plot_quality(axes, results: dict[str, dict]) -> None:
    """Perplexity per round; ideal FedAvg-LoRA's seeds as a band, off-scale curves clipped."""
    seeds = [r["perplexity"] for n, r in results.items() if n.startswith(IDEAL)]
    rounds = range(max(len(r["perplexity"]) for r in results.values()))
    if len(seeds) > 1:
        low = [min(c[i] for c in seeds) for i in range(len(seeds[0]))]
        high = [max(c[i] for c in seeds) for i in range(len(seeds[0]))]
        band = f"{IDEAL}: {len(seeds)} seeds"
        axes.fill_between(range(len(low)), low, high, color="tab:blue", alpha=0.2, label=band)
    top = 1.15 * max(r["perplexity"][0] for r in results.values())
    colors = {system: f"C{i}" for i, system in enumerate(SYSTEMS)}
    for name, result in results.items():
        if name.startswith(f"{IDEAL},"):
            continue
        system, rerun = name.split(", seed ")[0], ", seed " in name
        curve = result["perplexity"]
        label = name if max(curve) <= top else f"{name} (up to {max(curve):.0f}, clipped)"
        axes.plot(
            range(len(curve)), curve, "--" if rerun else "-", color=colors[system],
            marker="o", markersize=2 if rerun else 3, label=label,
        )  # fmt: skip
    axes.set_ylim(0.95 * min(min(r["perplexity"]) for r in results.values()), top)
    axes.set_xticks(list(rounds))
    axes.set_xlabel("round (0 = before training)")
    axes.set_ylabel("held-out perplexity")
    axes.set_title(f"Quality per round ({len(rounds) - 1} rounds; seed 0 solid, reruns dashed)")
    axes.legend(fontsize=7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    runner.add_scale_arguments(parser)
    parser.add_argument("--snr-low-db", type=float, default=0.0)
    parser.add_argument("--snr-high-db", type=float, default=20.0)
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument(
        "--noise-seeds", type=int, nargs="*", default=[1], help="reruns of ideal FedAvg-LoRA"
    )
    parser.add_argument(
        "--rerun-systems", nargs="*", default=[], choices=list(SYSTEMS), help="also run with"
    )
    parser.add_argument("--rerun-seeds", type=int, nargs="*", default=[1], help="their seeds")
    parser.add_argument("--resume", action="store_true", help="reuse runs already in the JSON")
    parser.add_argument("--out", type=Path, default=runner.FIGURES)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = run_all(args, args.out / "all_systems.json")
    rows = summary_rows(results)
    text = table(rows, args)
    (args.out / "all_systems.md").write_text(text + "\n")
    plot(results, rows, args.out / "all_systems.png")
    print(text)


if __name__ == "__main__":
    main()
