"""Final held-out perplexity and aggregation error against SNR, per uplink scheme.

Schemes (each the channel callback of its config, on the quickstart federation): ideal FedAvg
(configs/quickstart.yaml, once per seed), single-antenna AirComp (configs/aircomp_siso.yaml),
MIMO-OFDM AirComp with manifold-optimised, matched-filter and random receive beamformers
(configs/airfl_lora_mimo*.yaml) and digital FedAvg over the PHY abstraction
(configs/digital_fedavg.yaml). Every client has the same average SNR (``FixedSNR``) and the same
transmit power (``--tx-power-w``); the SNR is the one swept. Each (scheme, SNR) runs once per
``--seeds`` entry (every seed of the config set to it); the table gives mean and spread.

    python docs/experiments/snr_sweep.py --snrs 0 10 20 --seeds 0 1 2 --rounds 20 --local-steps 3

Runs are saved to the JSON one by one; ``--resume`` skips those already there, so a long sweep
can be stopped and continued. Writes docs/figures/snr_sweep.json (raw results), snr_sweep.md
(table) and snr_sweep.png (perplexity against round, one panel per SNR).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import runner

SCHEMES = {
    "AirComp SISO": ("aircomp_siso.yaml", {}),
    "AirComp MIMO, manifold BF": ("airfl_lora_mimo.yaml", {}),
    "AirComp MIMO, matched-filter BF": (
        "airfl_lora_mimo.yaml",
        {
            "trainer.callbacks.0.init_args.beamformer": {
                "class_path": "lit_airlora.channel.beamforming.MatchedFilterBeamformer"
            }
        },
    ),
    "AirComp MIMO, random BF": ("airfl_lora_mimo_random_bf.yaml", {}),
    "Digital FedAvg (PHY abstraction)": ("digital_fedavg.yaml", {}),
}
IDEAL = "Ideal FedAvg"


def channel_overrides(config_name: str, snr_db: float, tx_power_w: float) -> dict:
    """Every client at ``snr_db`` with the same transmit power, in the config's channel callback."""
    fixed = {
        "class_path": "lit_airlora.channel.large_scale.FixedSNR",
        "init_args": {"snr_db": float(snr_db)},
    }
    callback = "trainer.callbacks.0.init_args."
    power_key = "link.init_args.tx_power_w" if "digital" in config_name else "tx_power_w"
    return {callback + "large_scale": fixed, callback + power_key: tx_power_w}


def summarise(result: dict, scheme: str, snr_db: float | None, seed: int) -> dict:
    return {
        "scheme": scheme,
        "snr_db": snr_db,
        "seed": seed,
        "final_perplexity": result["perplexity"][-1],
        "perplexity": result["perplexity"],
        "agg_nmse_mean": runner.mean_metric(result, "channel/agg_nmse"),
        "rounds": result["rounds"],
        "wall_s": result["wall_s"],
    }


def jobs(args: argparse.Namespace) -> list[tuple[str, float | None, str, dict, int]]:
    """Every (scheme, SNR, config, extra overrides, seed) of the sweep, ideal first."""
    out = [(IDEAL, None, "quickstart.yaml", {}, seed) for seed in args.seeds]
    for seed in args.seeds:
        for snr in args.snrs:
            for scheme in args.schemes:
                name, extra = SCHEMES[scheme]
                out.append((scheme, float(snr), name, extra, seed))
    return out


def sweep(args: argparse.Namespace, out: Path) -> list[dict]:
    """Run (or, with --resume, reuse) every job; results saved after each run."""
    records = json.loads(out.read_text())["records"] if args.resume and out.exists() else []
    done = {(r["scheme"], r["snr_db"], r.get("seed", 0)) for r in records}
    scale = runner.scale_overrides(args)
    for scheme, snr, name, extra, seed in jobs(args):
        if (scheme, snr, seed) in done:
            continue
        config = runner.load_config(name)
        overrides = {**scale, **runner.seed_overrides(config, seed), **extra}
        if snr is not None:
            overrides.update(channel_overrides(name, snr, args.tx_power_w))
        tag = f"snr_{scheme.replace(' ', '_').replace(',', '')}_{snr}_{seed}"
        result = runner.run(config, overrides, tag, args.threads)
        records.append(summarise(result, scheme, snr, seed))
        out.write_text(json.dumps({"args": vars(args), "records": records}, indent=1, default=str))
        print(f"{scheme} @ {snr} dB, seed {seed}: {result['perplexity'][-1]:.2f}", flush=True)
    return records


def group(records: list[dict], scheme: str, snr_db: float | None) -> list[dict]:
    """The runs (one per seed) of one scheme at one SNR."""
    return [r for r in records if r["scheme"] == scheme and r["snr_db"] == snr_db]


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def table(records: list[dict], snrs: list[float], schemes: list[str]) -> str:
    """Markdown table: final perplexity mean +- std over seeds (mean agg NMSE) per scheme, SNR."""
    head = "| scheme | " + " | ".join(f"{s:g} dB" for s in snrs) + " |"
    lines = [head, "|---" * (len(snrs) + 1) + "|"]
    ideal = group(records, IDEAL, None)
    lines.append(f"| {IDEAL} | " + " | ".join(_cell(ideal) for _ in snrs) + " |")
    for scheme in schemes:
        cells = [_cell(group(records, scheme, float(s))) for s in snrs]
        lines.append(f"| {scheme} | " + " | ".join(cells) + " |")
    start, _ = spread([r["perplexity"][0] for r in ideal])
    lines += ["", f"Perplexity before round 1 (mean over seeds): {start:.2f}."]
    lines += ["", "Gap to ideal, paired by seed (mean +- std of scheme - ideal final perplexity):"]
    lines += ["", head, "|---" * (len(snrs) + 1) + "|"]
    for scheme in schemes:
        cells = [_gap_cell(group(records, scheme, float(s)), ideal) for s in snrs]
        lines.append(f"| {scheme} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(runs: list[dict]) -> str:
    if not runs:
        return "n/a"
    mean, std = spread([r["final_perplexity"] for r in runs])
    nmse = [r["agg_nmse_mean"] for r in runs if not math.isnan(r["agg_nmse_mean"])]
    nmse_text = "-" if not nmse or max(nmse) == 0 else f"{statistics.fmean(nmse):.2e}"
    return f"{mean:.2f} +- {std:.2f} ({nmse_text}, n={len(runs)})"


def _gap_cell(runs: list[dict], ideal: list[dict]) -> str:
    base = {r.get("seed", 0): r["final_perplexity"] for r in ideal}
    gaps = [
        r["final_perplexity"] - base[r.get("seed", 0)] for r in runs if r.get("seed", 0) in base
    ]
    if not gaps:
        return "n/a"
    mean, std = spread(gaps)
    return f"{mean:+.2f} +- {std:.2f}"


def plot(records: list[dict], snrs: list[float], schemes: list[str], path: Path) -> None:
    """Per SNR (columns): held-out perplexity against round (mean over seeds, band: min-max), and
    below it the gap to ideal FedAvg of the same seed (mean, band: min-max over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(snrs), figsize=(5.2 * len(snrs), 7.6), squeeze=False)
    ideal = {r.get("seed", 0): r["perplexity"] for r in group(records, IDEAL, None)}
    for column, snr in enumerate(snrs):
        runs_by_scheme = [(IDEAL, group(records, IDEAL, None))] + [
            (s, group(records, s, float(snr))) for s in schemes
        ]
        for scheme, runs in runs_by_scheme:
            if not runs:
                continue
            style = {"color": "black", "linestyle": "--"} if scheme == IDEAL else {}
            color = _band(axes[0][column], [r["perplexity"] for r in runs], scheme, style)
            gaps = [
                [p - q for p, q in zip(r["perplexity"], ideal[r.get("seed", 0)], strict=False)]
                for r in runs
                if r.get("seed", 0) in ideal
            ]
            if gaps:
                _band(axes[1][column], gaps, scheme, {**style, "color": color})
        axes[0][column].set_title(f"SNR {snr:g} dB")
        axes[0][column].set_ylabel("held-out perplexity")
        axes[1][column].set_ylabel("perplexity - ideal (same seed)")
        for axis in axes[:, column]:
            axis.set_xlabel("round")
            axis.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _band(axis, curves: list[list[float]], label: str, style: dict) -> str:
    """Mean curve with a min-max band over ``curves`` (cut to the shortest); returns its colour."""
    length = min(len(c) for c in curves)
    columns = [[c[i] for c in curves] for i in range(length)]
    x = list(range(length))
    line = axis.plot(x, [statistics.fmean(c) for c in columns], label=label, **style)
    color = line[0].get_color()
    axis.fill_between(
        x, [min(c) for c in columns], [max(c) for c in columns], alpha=0.15, color=color
    )
    return color


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snrs", type=float, nargs="+", default=[0.0, 10.0, 20.0])
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    parser.add_argument("--tx-power-w", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=runner.FIGURES)
    parser.add_argument("--resume", action="store_true", help="reuse runs in the JSON")
    runner.add_scale_arguments(parser)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    records = sweep(args, args.out / "snr_sweep.json")
    text = table(records, args.snrs, args.schemes)
    (args.out / "snr_sweep.md").write_text(text)
    plot(records, args.snrs, args.schemes, args.out / "snr_sweep.png")
    print(text)


if __name__ == "__main__":
    main()
