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

    python docs/experiments/rank_sweep.py --snrs -10 0 10 --ranks 1 2 4 8 --rounds 8 --local-steps 2

Runs are saved to the JSON one by one; ``--resume`` skips those already there. ``--only`` picks
a subset of the policies (``--only 1 8 selection``), so two processes can share a sweep, each
writing its own ``--json``; ``--merge A.json B.json`` writes the table and figure from several
(the SNRs found in them unless ``--snrs`` is given; the same run in two files is refused).
Writes docs/figures/rank_sweep*.json (raw results), rank_sweep.md (tables: mean and range over
seeds, differences to rank 8 within a seed, one verdict per SNR) and rank_sweep.png (perplexity
against round per SNR, and final perplexity against rank).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
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


def summarise(result: dict, policy: str, snr_db: float, seed: int, cpu_s: float) -> dict:
    """The record of one run; ``cpu_s`` is the process's CPU time during it (beside the wall
    time, it tells how much the shared machine slowed the run)."""
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
        "cpu_s": cpu_s,
        "load_avg_1m": os.getloadavg()[0],  # the machine's load when the run ended
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
                cpu = time.process_time()
                result = runner.run(config, overrides, tag, args.threads, after_fit=rank_record)
                cpu = time.process_time() - cpu
                records.append(summarise(result, policy, float(snr), seed, cpu))
                text = json.dumps({"args": vars(args), "records": records}, indent=1, default=str)
                out.write_text(text)
                print(
                    f"{policy} @ {snr:g} dB, seed {seed}: {result['perplexity'][-1]:.2f} "
                    f"({result['wall_s']:.0f} s wall, {cpu:.0f} s CPU)",
                    flush=True,
                )
    return records


def policies(args: argparse.Namespace) -> list[str]:
    return [str(r) for r in args.ranks] + [SELECTION]


def merge(paths: list[Path]) -> list[dict]:
    """The records of several JSON files; the same (policy, SNR, seed) twice is refused."""
    records, seen = [], {}
    for path in paths:
        for record in json.loads(path.read_text())["records"]:
            key = (record["policy"], float(record["snr_db"]), record["seed"])
            if key in seen:
                raise ValueError(
                    f"--merge: policy {key[0]} at {key[1]:g} dB seed {key[2]} is in both "
                    f"{seen[key]} and {path}; keep it in one file"
                )
            seen[key] = path
            records.append(record)
    return records


def group(records: list[dict], policy: str, snr_db: float) -> list[dict]:
    """The runs of one policy at one SNR, by seed."""
    runs = [r for r in records if r["policy"] == policy and r["snr_db"] == float(snr_db)]
    return sorted(runs, key=lambda r: r["seed"])


def finals(records: list[dict], policy: str, snr_db: float) -> dict[int, float]:
    """Final held-out perplexity by seed."""
    return {r["seed"]: r["final_perplexity"] for r in group(records, policy, snr_db)}


def spread(values: list[float]) -> float:
    """The range (max - min) over seeds: with two or three seeds a standard deviation says
    no more, and the range is what a reader can check against the per-seed values."""
    return max(values) - min(values) if values else 0.0


def table(records: list[dict], snrs: list[float], names: list[str]) -> str:
    """Markdown tables: final perplexity (mean [min, max] over seeds, n), uplink Mbit of all
    rounds, mean aggregation NMSE; each policy minus fixed rank 8 within a seed; one verdict per
    SNR; and the mean rank the selection chose by round."""
    head = "| policy | " + " | ".join(f"{s:g} dB: final ppl / Mbit / NMSE" for s in snrs) + " |"
    lines = [head, "|---" * (len(snrs) + 1) + "|"]
    for name in names:
        cells = [_cell(group(records, name, s)) for s in snrs]
        lines.append(f"| {_label(name)} | " + " | ".join(cells) + " |")
    reference = max((n for n in names if n != SELECTION), key=int, default=None)
    if reference is not None:
        lines += [
            "",
            f"Final perplexity minus fixed rank {reference}'s, same seed: mean "
            "[min, max] over seeds (n):",
            "",
        ]
        lines += [head.replace("final ppl / Mbit / NMSE", f"minus rank {reference}"), lines[1]]
        for name in (n for n in names if n != reference):
            cells = [_diff_cell(records, name, reference, s) for s in snrs]
            lines.append(f"| {_label(name)} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {s:g} dB: {verdict(records, s, names)}" for s in snrs]
    for snr in snrs:
        for run in group(records, SELECTION, snr):
            ranks = ", ".join(f"{r:.2f}" for r in run["mean_rank"])
            where = f"{snr:g} dB (seed {run['seed']})"
            lines.append(f"\nSelection at {where}, mean rank by round: {ranks}")
    return "\n".join(lines) + "\n"


def _label(name: str) -> str:
    return f"fixed rank {name}" if name != SELECTION else "backtracking selection"


def _cell(runs: list[dict]) -> str:
    if not runs:
        return "n/a"
    ppl = _stats([r["final_perplexity"] for r in runs])
    bits = statistics.fmean(r["total_bits"] for r in runs) / 1e6
    nmse = statistics.fmean(r["agg_nmse_mean"] for r in runs)
    return f"{ppl} / {bits:.1f} / {nmse:.2f}"


def _stats(values: list[float], spec: str = ".2f") -> str:
    text = format(statistics.fmean(values), spec)
    if len(values) > 1:
        text += f" [{format(min(values), spec)}, {format(max(values), spec)}]"
    return f"{text} (n={len(values)})"


def paired(records: list[dict], name: str, other: str, snr_db: float) -> list[float]:
    """``name``'s final perplexity minus ``other``'s, for each seed that ran both."""
    mine, theirs = finals(records, name, snr_db), finals(records, other, snr_db)
    return [mine[s] - theirs[s] for s in sorted(mine) if s in theirs]


def _diff_cell(records: list[dict], name: str, other: str, snr_db: float) -> str:
    diffs = paired(records, name, other, snr_db)
    return _stats(diffs, "+.2f") if diffs else "n/a"


def clearly_below(records: list[dict], name: str, other: str, snr_db: float) -> bool:
    """``name`` ends below ``other`` in every seed (at least two) by more than the larger of the
    two policies' ranges over seeds: a difference inside the seed spread is not a result."""
    diffs = paired(records, name, other, snr_db)
    noise = max(spread(list(finals(records, n, snr_db).values())) for n in (name, other))
    return len(diffs) >= 2 and max(diffs) < 0 and min(-d for d in diffs) > noise


def verdict(records: list[dict], snr_db: float, names: list[str]) -> str:
    """Whether the fixed ranks show an interior optimum in perplexity at ``snr_db``: the best
    rank by mean must be clearly below (``clearly_below``) the smallest and the largest rank."""
    ranks = sorted((n for n in names if n != SELECTION and finals(records, n, snr_db)), key=int)
    if len(ranks) < 3:
        return "fewer than three fixed ranks ran: not decided."
    means = {n: statistics.fmean(finals(records, n, snr_db).values()) for n in ranks}
    best = min(ranks, key=means.get)
    seeds = min(len(finals(records, n, snr_db)) for n in ranks)
    text = f"best fixed rank by mean {best} ({means[best]:.2f}; at least {seeds} seed(s) each); "
    unclear = [n for n in ranks if n != best and not clearly_below(records, best, n, snr_db)]
    ends = {ranks[0], ranks[-1]}
    if best not in ends and not ends & set(unclear):
        return text + f"clearly below ranks {ranks[0]} and {ranks[-1]}: an interior optimum."
    if best in ends and not unclear:
        return text + "clearly below every other rank: no interior optimum (the best is an end)."
    inside = ", ".join(unclear)
    return text + f"inside the seed spread against rank(s) {inside}: not decided."


def plot(records: list[dict], snrs: list[float], names: list[str], path: Path) -> None:
    """Top: mean perplexity over seeds against round per SNR (from round 3 on where the curves
    part); bottom: final perplexity against rank (fixed ranks: mean over seeds with the range as
    error bar; the selection: one star per seed at its mean rank over rounds 2+)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(snrs), figsize=(5.2 * len(snrs), 7.6), squeeze=False)
    for column, snr in enumerate(snrs):
        top, bottom = axes[0][column], axes[1][column]
        _plot_curves(top, records, snr, names)
        _plot_ranks(bottom, records, snr, names)
        top.set_title(f"SNR {snr:g} dB")
        top.set_xlabel("round")
        top.set_ylabel("held-out perplexity (mean over seeds)")
        bottom.set_xlabel("LoRA rank (selection: mean over rounds 2+)")
        bottom.set_ylabel("final held-out perplexity")
        bottom.set_xscale("log", base=2)
        for axis in (top, bottom):
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _plot_curves(axis, records: list[dict], snr: float, names: list[str]) -> None:
    curves = []
    for name in names:
        runs = group(records, name, snr)
        if not runs:
            continue
        length = min(len(r["perplexity"]) for r in runs)
        mean = [statistics.fmean(r["perplexity"][t] for r in runs) for t in range(length)]
        style = {"color": "black", "linestyle": "--"} if name == SELECTION else {}
        label = f"rank {name}" if name != SELECTION else "selection"
        axis.plot(mean, label=f"{label} (n={len(runs)})", **style)
        curves.append(mean)
    if curves and min(len(c) for c in curves) > 4:  # zoom on the rounds where they differ
        axis.set_ylim(min(min(c) for c in curves) - 1, max(c[3] for c in curves) + 1)
        axis.set_xlim(2.5, max(len(c) for c in curves) - 0.8)


def _plot_ranks(axis, records: list[dict], snr: float, names: list[str]) -> None:
    fixed = [(int(n), list(finals(records, n, snr).values())) for n in names if n != SELECTION]
    fixed = sorted((r, v) for r, v in fixed if v)
    if fixed:
        means = [statistics.fmean(v) for _, v in fixed]
        low = [m - min(v) for m, (_, v) in zip(means, fixed, strict=True)]
        high = [max(v) - m for m, (_, v) in zip(means, fixed, strict=True)]
        xs = [r for r, _ in fixed]
        axis.errorbar(xs, means, yerr=[low, high], fmt="o-", capsize=3, label="fixed rank")
    for i, run in enumerate(group(records, SELECTION, snr)):
        mean_rank = statistics.fmean(run["mean_rank"][1:] or run["mean_rank"])
        label = "selection (one star per seed)" if i == 0 else None
        axis.plot([mean_rank], [run["final_perplexity"]], "k*", ms=12, label=label)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--snrs", type=float, nargs="+", help="default: 0 10 (with --merge: those in the files)"
    )
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
        records = merge(args.merge)
        args.snrs = args.snrs or sorted({float(r["snr_db"]) for r in records})
    else:
        args.snrs = args.snrs or [0.0, 10.0]
        records = sweep(args, args.json or args.out / "rank_sweep.json")
    names = policies(args)
    text = table(records, args.snrs, names)
    (args.out / "rank_sweep.md").write_text(text)
    plot(records, args.snrs, names, args.out / "rank_sweep.png")
    print(text)


if __name__ == "__main__":
    main()
