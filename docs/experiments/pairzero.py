"""pAirZero: zeroth-order federated fine-tuning over the air, against SNR, schedule and FO-Adam.

Runs (SmolLM2-135M, LoRA factors, Shakespeare roles as clients; configs/pairzero_*.yaml):
Perfect (noise-free mean of the scalars, no privacy), analog pAirZero and Sign-pAirZero at each
``--snrs`` value (every client at that mean SNR, Rayleigh fading, truncation 10 dB below the
mean, (epsilon, delta) = (5, 0.01) spent along the optimised schedule), analog pAirZero at
``--schedule-snr`` with the Static and Reversed schedules, and the FO-Adam baseline on the same
clients and minibatches. Records held-out perplexity before round 1 and after the last round,
the aggregation error of the broadcast scalars against their noise-free mean (per round), sign
flips, epsilon and uplink bits per client per round.

    python docs/experiments/pairzero.py --rounds 30 --snrs 0 20      # the short run of results.md
    python docs/experiments/pairzero.py --rounds 8000 --snrs 0 5 10 15 20 --batch-size 16 ...

Runs are saved to the JSON one by one; ``--resume`` skips those already there. Writes
docs/figures/pairzero.json, pairzero.md (table) and pairzero.png.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import runner

TASK = ["quickstart.yaml", "pairzero/task.yaml"]
ZO = [*TASK, "pairzero/zeroth_order.yaml"]
CALLBACK = "trainer.callbacks.0.init_args."


def runs(args) -> dict[str, tuple[list[str], dict]]:
    """Run name -> (config files as the header command composes them, dotted overrides)."""
    out = {
        "Perfect": ([*ZO, "pairzero_perfect.yaml"], {}),
        "FO-Adam": (
            [*TASK, "pairzero_fo_adam.yaml"],
            {"model.init_args.learning_rate": args.fo_lr},
        ),
    }
    for snr in args.snrs:
        for label, name in (("Analog", "pairzero_analog.yaml"), ("Sign", "pairzero_sign.yaml")):
            out[f"{label} {snr:g} dB"] = ([*ZO, name], channel(snr, "optimised", label, args))
    for schedule in ("static", "reversed"):
        overrides = channel(args.schedule_snr, schedule, "Analog", args)
        out[f"Analog {args.schedule_snr:g} dB, {schedule}"] = (
            [*ZO, "pairzero_analog.yaml"],
            overrides,
        )
    return out


def channel(snr_db: float, schedule: str, label: str, args) -> dict:
    return {
        CALLBACK + "large_scale.init_args.snr_db": float(snr_db),
        CALLBACK + "min_gain_db": float(snr_db) - 10.0,
        CALLBACK + "privacy.init_args.schedule": schedule,
        CALLBACK + "privacy.init_args.epsilon": args.epsilon,
        CALLBACK + "privacy.init_args.contraction": args.contraction,
        "model.init_args.zeroth_order.init_args.learning_rate": args.sign_lr
        if label == "Sign"
        else args.zo_lr,
    }


def scale(args) -> dict:
    data = "data.init_args."
    return {
        "trainer.max_epochs": args.rounds,
        "trainer.check_val_every_n_epoch": args.rounds,
        data + "seq_len": args.seq_len,
        data + "batch_size": args.batch_size,
        data + "val_fraction": args.val_fraction,
        data + "max_samples_per_client": args.max_samples,
        "model.init_args.zeroth_order.init_args.num_perturbations": args.perturbations,
        "model.init_args.zeroth_order.init_args.clip": args.clip,
    }


def summarise(name: str, result: dict) -> dict:
    rounds = result["rounds"]
    ppl = result["perplexity"]
    last = rounds[-1] if rounds else {}
    return {
        "run": name,
        "rounds": len(rounds),
        "ppl_start": ppl[0],
        "ppl_end": ppl[-1],
        "agg_mse": runner.mean_metric(result, "channel/agg_mse"),
        "agg_mse_by_round": [r.get("channel/agg_mse", math.nan) for r in rounds],
        "sign_flip_rate": runner.mean_metric(result, "channel/sign_flip_rate"),
        "epsilon": last.get("privacy/epsilon", math.inf),
        "bits_per_client_round": runner.mean_metric(result, "comm/uplink_bits_per_client"),
        "wall_s": result["wall_s"],
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| run | rounds | ppl before | ppl after | scalar MSE | sign flips | epsilon "
        "| bits/client/round |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        flips = "" if math.isnan(r["sign_flip_rate"]) else f"{r['sign_flip_rate']:.3f}"
        mse = "" if math.isnan(r["agg_mse"]) else f"{r['agg_mse']:.3g}"
        eps = "inf (no noise)" if math.isinf(r["epsilon"]) else f"{r['epsilon']:.3f}"
        lines.append(
            f"| {r['run']} | {r['rounds']} | {r['ppl_start']:.3f} | {r['ppl_end']:.3f} | {mse} "
            f"| {flips} | {eps} | {r['bits_per_client_round']:.0f} |"
        )
    return "\n".join(lines)


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = [r["run"] for r in rows]
    left.barh(names, [r["ppl_end"] - r["ppl_start"] for r in rows])
    left.set_xlabel("held-out perplexity change over the run")
    left.axvline(0, color="k", lw=0.5)
    for r in rows:
        if r["run"].startswith("Analog") and not math.isnan(r["agg_mse"]):
            right.semilogy(r["agg_mse_by_round"], label=r["run"])
    right.set_xlabel("round")
    right.set_ylabel("MSE of the broadcast scalar")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--snrs", type=float, nargs="+", default=[0.0, 20.0])
    parser.add_argument("--schedule-snr", type=float, default=20.0)
    parser.add_argument("--epsilon", type=float, default=5.0)
    parser.add_argument("--contraction", type=float, default=0.95)
    parser.add_argument("--perturbations", type=int, default=1)
    parser.add_argument("--clip", type=float, default=100.0, help="gamma (the paper: 100)")
    parser.add_argument("--zo-lr", type=float, default=1e-4)
    parser.add_argument("--sign-lr", type=float, default=1e-4)
    parser.add_argument("--fo-lr", type=float, default=1e-3)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--max-samples", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="run only these names")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--out", default=str(runner.FIGURES / "pairzero"))
    args = parser.parse_args()
    from lit_airlora.cli import compose_config

    out = Path(args.out)
    raw = json.loads(out.with_suffix(".json").read_text()) if args.resume else {"runs": []}
    raw["args"] = vars(args)
    done = {r["run"] for r in raw["runs"]}
    for name, (files, overrides) in runs(args).items():
        if name in done or (args.only and name not in args.only):
            continue
        config = compose_config(*(runner.CONFIGS / f for f in files))
        overrides = {**scale(args), **overrides}
        if config["model"]["init_args"].get("zeroth_order") is None:  # FO-Adam
            overrides = {k: v for k, v in overrides.items() if "zeroth_order" not in k}
        result = runner.run(config, overrides, f"pairzero_{len(done)}", args.threads)
        raw["runs"].append(summarise(name, result))
        done.add(name)
        out.with_suffix(".json").write_text(json.dumps(raw, indent=1))
        print(f"{name}: {raw['runs'][-1]['ppl_start']:.3f} -> {raw['runs'][-1]['ppl_end']:.3f}")
    out.with_suffix(".md").write_text(table(raw["runs"]) + "\n")
    figure(raw["runs"], out.with_suffix(".png"))
    print(table(raw["runs"]))


if __name__ == "__main__":
    main()
