"""AirFL-LoRA rank sweep: held-out perplexity against LoRA rank under a fixed energy budget.

Every run is configs/airfl_lora_rank_selection.yaml on the quickstart federation: multi-stream
MIMO-OFDM AirComp (TDL-A, 64 subcarriers, 4 x 2 antennas, 2 streams, ZF precoders, manifold
receive beamformers) with a fixed energy budget per round (``energy_budget_symbols``), so a
lower rank (a shorter payload) gets more energy per value. The rank policy is either
``FixedRank(r)`` for each ``--ranks`` entry (the same rank everywhere from round 1 on; lowered
from ``max_rank`` with ``prefix`` truncation, since the adapter's ``B`` is still zero then and
an SVD of a zero update would zero ``A`` too) or the config's backtracking rank selection on the
gap bound (``selection``). Every client has the same average SNR (``FixedSNR``), set in the
channel callback and in the policy's MSE model alike, and the sweep runs at each ``--snrs``.

    python docs/experiments/rank_sweep.py --snrs 0 10 --ranks 1 2 4 8 --rounds 10 --local-steps 4

Runs are saved to the JSON one by one; ``--resume`` skips those already there. ``--only`` picks
a subset of the policies (``--only 1 8 selection``), so two processes can share a sweep, each
writing its own ``--json``; ``--merge A.json B.json`` writes the table and figure from several.
Writes docs/figures/rank_sweep*.json (raw results), rank_sweep.md (table) and rank_sweep.png
(perplexity against round per SNR, and final perplexity against rank).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import runner

from lit_airlora.callbacks.rank_policy import RankPolicyCallback

CONFIG = "airfl_lora_rank_selection.yaml"
SELECTION = "selection"
CHANNEL = "trainer.callbacks.0.init_args."
POLICY = "trainer.callbacks.1.init_args."


def fixed_snr(snr_db: float) -> dict:
    return {
        "class_path": "lit_airlora.channel.large_scale.FixedSNR",
        "init_args": {"snr_db": float(snr_db)},
    }


def policy_overrides(policy: str, snr_db: float, lr: float) -> dict:
    """The channel at ``snr_db`` for every client, and the rank policy of the run (the
    selection's bound uses the local learning rate ``lr`` of the run)."""
    out = {CHANNEL + "large_scale": fixed_snr(snr_db)}
    if policy == SELECTION:
        out[POLICY + "policy.init_args.mse_model.init_args.large_scale"] = fixed_snr(snr_db)
        out[POLICY + "policy.init_args.lr"] = lr
        return out
    out[POLICY + "policy"] = {
        "class_path": "lit_airlora.policy.fixed.FixedRank",
        "init_args": {"rank": int(policy)},
    }
    out[POLICY + "truncate"] = "prefix"
    return out


def rank_record(cli) -> dict:
    """The ranks the policy set per round (mean over modules, and the count of each rank)."""
    callback = next(c for c in cli.trainer.callbacks if isinstance(c, RankPolicyCallback))
    history = callback.rank_history
    by_round = [[h[i] for h in history.values()] for i in range(len(callback.rounds))]
    return {
        "mean_rank": [statistics.fmean(r) for r in by_round],
        "rank_counts": [{str(k): r.count(k) for k in sorted(set(r))} for r in by_round],
    }


def summarise(result: dict, policy: str, snr_db: float, seed: int) -> dict:
    rounds = result["rounds"]
    return {
        "policy": policy,
        "snr_db": snr_db,
        "seed": seed,
        "final_perplexity": result["perplexity"][-1],
        "perplexity": result["perplexity"],
        "total_bits": result["total_bits"],
        "uplink_bits": [r.get("comm/uplink_bits") for r in rounds],
        "mean_rank": result["mean_rank"],
        "bound": [{k: v for k, v in r.items() if k.startswith("policy/bound/")} for r in rounds],
        "rank_counts": result["rank_counts"],
        "agg_nmse_mean": runner.mean_metric(result, "channel/agg_nmse"),
        "energy_shift_db": [r.get("channel/energy_shift_db") for r in rounds],
        "rounds": rounds,
        "wall_s": result["wall_s"],
    }


def sweep(args: argparse.Namespace, out: Path) -> list[dict]:
    """Run (or, with --resume, reuse) every (SNR, policy, seed); results saved after each run."""
    records = json.loads(out.read_text())["records"] if args.resume and out.exists() else []
    done = {(r["policy"], r["snr_db"], r["seed"]) for r in records}
    config = runner.load_config(CONFIG)
    scale = runner.scale_overrides(args)
    for seed in args.seeds:
        for snr in args.snrs:
            for policy in args.only or policies(args):
                if (policy, float(snr), seed) in done:
                    continue
                overrides = {
                    **scale,
                    **runner.seed_overrides(config, seed),
                    **policy_overrides(policy, snr, args.lr),
                }
                tag = f"rank_{policy}_{snr:g}_{seed}"
                result = runner.run(config, overrides, tag, args.threads, after_fit=rank_record)
                records.append(summarise(result, policy, float(snr), seed))
                text = json.dumps({"args": vars(args), "records": records}, indent=1, default=str)
                out.write_text(text)
                print(
                    f"{policy} @ {snr:g} dB, seed {seed}: {result['perplexity'][-1]:.2f} "
                    f"({result['wall_s']:.0f} s)",
                    flush=True,
                )
    return records


def policies(args: argparse.Namespace) -> list[str]:
    return [str(r) for r in args.ranks] + [SELECTION]


def group(records: list[dict], policy: str, snr_db: float) -> list[dict]:
    return [r for r in records if r["policy"] == policy and r["snr_db"] == float(snr_db)]


def table(records: list[dict], snrs: list[float], names: list[str]) -> str:
    """Markdown table: final perplexity (with several seeds: mean, then each seed's), uplink Mbit
    of all rounds, mean aggregation NMSE; and the mean rank the selection chose by round."""
    head = "| policy | " + " | ".join(f"{s:g} dB: final ppl / Mbit / NMSE" for s in snrs) + " |"
    lines = [head, "|---" * (len(snrs) + 1) + "|"]
    for name in names:
        cells = [_cell(group(records, name, s)) for s in snrs]
        label = f"fixed rank {name}" if name != SELECTION else "backtracking selection"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for snr in snrs:
        for run in group(records, SELECTION, snr):
            ranks = ", ".join(f"{r:.2f}" for r in run["mean_rank"])
            where = f"{snr:g} dB (seed {run['seed']})"
            lines.append(f"\nSelection at {where}, mean rank by round: {ranks}")
    return "\n".join(lines) + "\n"


def _cell(runs: list[dict]) -> str:
    if not runs:
        return "n/a"
    finals = [r["final_perplexity"] for r in sorted(runs, key=lambda r: r["seed"])]
    bits = statistics.fmean(r["total_bits"] for r in runs) / 1e6
    nmse = statistics.fmean(r["agg_nmse_mean"] for r in runs)
    ppl = f"{finals[0]:.2f}"
    if len(finals) > 1:  # mean, then every seed's value
        ppl = f"{statistics.fmean(finals):.2f} ({', '.join(f'{f:.2f}' for f in finals)})"
    return f"{ppl} / {bits:.1f} / {nmse:.2f}"


def plot(records: list[dict], snrs: list[float], names: list[str], path: Path) -> None:
    """Top: perplexity against round per SNR (one line per run, from round 3 on where the curves
    part); bottom: final perplexity against rank (fixed ranks as a line, mean over seeds; the
    selection at its mean rank over rounds 2+)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(snrs), figsize=(5.2 * len(snrs), 7.6), squeeze=False)
    for column, snr in enumerate(snrs):
        top, bottom = axes[0][column], axes[1][column]
        for name in names:
            for run in group(records, name, snr):
                label = f"rank {name}" if name != SELECTION else "selection"
                label += f", seed {run['seed']}" if run["seed"] else ""
                style = {"color": "black", "linestyle": "--"} if name == SELECTION else {}
                top.plot(run["perplexity"], label=label, **style)
        fixed = sorted((int(n), group(records, n, snr)) for n in names if n != SELECTION)
        fixed = [(r, runs) for r, runs in fixed if runs]
        if fixed:
            xs = [r for r, _ in fixed]
            ys = [statistics.fmean(x["final_perplexity"] for x in runs) for _, runs in fixed]
            bottom.plot(xs, ys, "o-", label="fixed rank")
        for run in group(records, SELECTION, snr):
            mean_rank = statistics.fmean(run["mean_rank"][1:] or run["mean_rank"])
            bottom.plot([mean_rank], [run["final_perplexity"]], "k*", ms=12, label="selection")
        curves = [r["perplexity"] for n in names for r in group(records, n, snr)]
        if curves and min(len(c) for c in curves) > 4:  # zoom on the rounds where they differ
            low = min(min(c) for c in curves)
            top.set_ylim(low - 1, max(c[3] for c in curves) + 1)
            top.set_xlim(2.5, max(len(c) for c in curves) - 0.8)
        top.set_title(f"SNR {snr:g} dB")
        top.set_xlabel("round")
        top.set_ylabel("held-out perplexity")
        bottom.set_xlabel("LoRA rank (selection: mean over rounds 2+)")
        bottom.set_ylabel("final held-out perplexity")
        bottom.set_xscale("log", base=2)
        for axis in (top, bottom):
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snrs", type=float, nargs="+", default=[0.0, 10.0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--only", nargs="+", help="run only these policies (ranks, selection)")
    parser.add_argument("--out", type=Path, default=runner.FIGURES)
    parser.add_argument("--json", type=Path, help="raw results (default: OUT/rank_sweep.json)")
    parser.add_argument("--merge", type=Path, nargs="+", help="only write table/figure from these")
    parser.add_argument("--resume", action="store_true", help="reuse runs in the JSON")
    runner.add_scale_arguments(parser)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        records = [r for p in args.merge for r in json.loads(p.read_text())["records"]]
    else:
        records = sweep(args, args.json or args.out / "rank_sweep.json")
    names = policies(args)
    text = table(records, args.snrs, names)
    (args.out / "rank_sweep.md").write_text(text)
    plot(records, args.snrs, names, args.out / "rank_sweep.png")
    print(text)


if __name__ == "__main__":
    main()
