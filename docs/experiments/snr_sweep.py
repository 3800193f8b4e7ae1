"""Final held-out perplexity and aggregation error against SNR, per uplink scheme.

Schemes (each the channel callback of its config, on the quickstart federation): ideal FedAvg
(configs/quickstart.yaml, run once), single-antenna AirComp (configs/aircomp_siso.yaml),
MIMO-OFDM AirComp with manifold-optimised and random receive beamformers
(configs/airfl_lora_mimo*.yaml) and digital FedAvg over the PHY abstraction
(configs/digital_fedavg.yaml). Every client has the same average SNR (``FixedSNR``) and the same
transmit power (``--tx-power-w``); the SNR is the one swept.

    python docs/experiments/snr_sweep.py --snrs 0 10 20 --rounds 3

Writes docs/figures/snr_sweep.json (raw results), snr_sweep.md (table) and snr_sweep.png.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import runner

SCHEMES = {
    "AirComp SISO": "aircomp_siso.yaml",
    "AirComp MIMO, manifold BF": "airfl_lora_mimo.yaml",
    "AirComp MIMO, random BF": "airfl_lora_mimo_random_bf.yaml",
    "Digital FedAvg (PHY abstraction)": "digital_fedavg.yaml",
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


def summarise(result: dict, scheme: str, snr_db: float | None) -> dict:
    return {
        "scheme": scheme,
        "snr_db": snr_db,
        "final_perplexity": result["perplexity"][-1],
        "perplexity": result["perplexity"],
        "agg_nmse_mean": runner.mean_metric(result, "channel/agg_nmse"),
        "rounds": result["rounds"],
        "wall_s": result["wall_s"],
    }


def sweep(args: argparse.Namespace, out: Path) -> list[dict]:
    """Run (or, with --resume, reuse) every scheme at every SNR; results saved after each run."""
    records = json.loads(out.read_text())["records"] if args.resume and out.exists() else []
    done = {(r["scheme"], r["snr_db"]) for r in records}
    scale = runner.scale_overrides(args)
    jobs = [(IDEAL, None, "quickstart.yaml")] + [
        (scheme, float(snr), name) for snr in args.snrs for scheme, name in SCHEMES.items()
    ]
    for scheme, snr, name in jobs:
        if (scheme, snr) in done:
            continue
        overrides = dict(scale)
        if snr is not None:
            overrides.update(channel_overrides(name, snr, args.tx_power_w))
        tag = f"snr_{name.removesuffix('.yaml')}_{snr}"
        result = runner.run(runner.load_config(name), overrides, tag, args.threads)
        records.append(summarise(result, scheme, snr))
        out.write_text(json.dumps({"args": vars(args), "records": records}, indent=1, default=str))
    return records


def table(records: list[dict], snrs: list[float]) -> str:
    """Markdown table: final perplexity (mean agg NMSE) per scheme and SNR."""
    by_key = {(r["scheme"], r["snr_db"]): r for r in records}
    ideal = by_key[(IDEAL, None)]
    head = "| scheme | " + " | ".join(f"{s:g} dB" for s in snrs) + " |"
    lines = [head, "|---" * (len(snrs) + 1) + "|"]
    lines.append(f"| {IDEAL} | " + " | ".join(_cell(ideal) for _ in snrs) + " |")
    for scheme in SCHEMES:
        cells = [_cell(by_key[(scheme, float(s))]) for s in snrs]
        lines.append(f"| {scheme} | " + " | ".join(cells) + " |")
    start = ideal["perplexity"][0]
    return "\n".join(lines) + f"\n\nPerplexity before round 1: {start:.2f}.\n"


def _cell(record: dict) -> str:
    nmse = record["agg_nmse_mean"]
    nmse_text = "-" if math.isnan(nmse) or nmse == 0 else f"{nmse:.2e}"
    return f"{record['final_perplexity']:.2f} ({nmse_text})"


def plot(records: list[dict], snrs: list[float], path: Path) -> None:
    """Final perplexity (left) and mean aggregation NMSE (right) against SNR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    ideal = next(r for r in records if r["scheme"] == IDEAL)
    left.axhline(ideal["final_perplexity"], color="black", linestyle="--", label=IDEAL)
    for scheme, marker in zip(SCHEMES, "osv^", strict=True):
        values = [_record(records, scheme, s) for s in snrs]
        left.plot(snrs, [v["final_perplexity"] for v in values], marker=marker, label=scheme)
        right.plot(snrs, [v["agg_nmse_mean"] for v in values], marker=marker, label=scheme)
    left.set_ylabel("final held-out perplexity")
    left.set_title("Perplexity after the last round")
    right.set_yscale("log")
    right.set_ylabel("mean aggregation NMSE (channel/agg_nmse)")
    right.set_title("Aggregation error against the ideal FedAvg")
    for axis in (left, right):
        axis.set_xlabel("SNR per client (dB)")
        axis.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _record(records: list[dict], scheme: str, snr_db: float) -> dict:
    return next(r for r in records if r["scheme"] == scheme and r["snr_db"] == float(snr_db))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snrs", type=float, nargs="+", default=[0.0, 10.0, 20.0])
    parser.add_argument("--tx-power-w", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=runner.FIGURES)
    parser.add_argument("--resume", action="store_true", help="reuse runs in the JSON")
    runner.add_scale_arguments(parser)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    records = sweep(args, args.out / "snr_sweep.json")
    text = table(records, args.snrs)
    (args.out / "snr_sweep.md").write_text(text)
    plot(records, args.snrs, args.out / "snr_sweep.png")
    print(text)


if __name__ == "__main__":
    main()
