"""Perplexity against uplink bits: FedAvg-LoRA, element-wise top-k, SOFT and SOFT + TSFA.

Runs on the quickstart federation, all for the same number of rounds: FedAvg-LoRA without
compression (configs/quickstart.yaml), top-k (configs/topk.yaml), SOFT (configs/soft.yaml),
SOFT + TSFA (configs/soft_tsfa.yaml), and top-k with its ``rho`` chosen so that a client's
upload costs what a SOFT upload measured (same bit budget), each for every seed. Checks the
claims of Kim and Choi (arXiv 2505.00333) with bits to target: the cumulative uplink bits each
method needs to first reach the held-out perplexity FedAvg reached after 25%, 50%, 75% and 100%
of the rounds it took to its best (same seed), and within 2% of FedAvg's best (the paper's
"equal quality"), and whether it reaches it at all; and TSFA's time-average round latency
against its budget T_bar. Held-out perplexity is measured before round 1 and after every round.

    python docs/experiments/soft_bits.py --rounds 20 --local-steps 6 --seeds 0 1

Two processes can share the runs (never one JSON file), then merge without training:

    python docs/experiments/soft_bits.py --json a.json --runs soft:0 topk_matched:0 ...
    python docs/experiments/soft_bits.py --json b.json --runs fedavg:0 topk:0 tsfa:0 ...
    python docs/experiments/soft_bits.py --merge a.json b.json

``topk_matched`` needs a SOFT run earlier in its own file. Every run is saved to the JSON when
it ends; ``--resume`` skips the runs already there. Writes docs/figures/soft_bits.{json,md,png}
and docs/figures/tsfa_latency.png.
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
METHODS = {  # --methods key: (name in the JSON and tables, config of configs/)
    "fedavg": (FEDAVG, "quickstart.yaml"),
    "soft": (SOFT, "soft.yaml"),
    "topk_matched": (TOPK_MATCHED, "topk.yaml"),
    "topk": (TOPK, "topk.yaml"),
    "tsfa": (TSFA, "soft_tsfa.yaml"),
}
ORDER = [name for name, _ in METHODS.values()]
#: Targets: the best held-out perplexity FedAvg reached within these fractions of the rounds it
#: took to its best, and "equal quality" as the paper's reproduction target defines it: within
#: 2% of FedAvg's best.
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
TOLERANCE = 0.02
EQUAL = "within 2% of FedAvg's best"
STRICT = "FedAvg's best"
RHO_KEY = "trainer.callbacks.0.init_args.encoder.init_args.rho"
#: SOFT + TSFA's uplink carries 16-bit floats (configs/soft_tsfa.yaml); this row prices its
#: values at 32 bits like the other methods' (twice its bits; the r-bit masks, under 0.1% of
#: them, are counted twice too).
TSFA_32 = "SOFT + TSFA, values at 32 bits"


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


def run_all(args: argparse.Namespace, out: Path) -> dict[str, dict[str, dict]]:
    """Every planned run (method x seed), saved to ``out`` after each one.

    ``results[method][seed]``; with ``--resume`` the runs already in ``out`` are kept and skipped.
    """
    results = json.loads(out.read_text())["results"] if args.resume and out.exists() else {}
    scale = runner.scale_overrides(args)
    for key, seed in plan(args):
        name, config_name = METHODS[key]
        if str(seed) in results.get(name, {}):
            continue
        config = runner.load_config(config_name)
        extra = _matched_override(results, seed) if key == "topk_matched" else {}
        overrides = {**scale, **runner.seed_overrides(config, seed), **extra}
        tag = f"soft_bits_{key}_seed{seed}"
        result = runner.run(config, overrides, tag, args.threads)
        results.setdefault(name, {})[str(seed)] = {**result, **extra, "seed": seed}
        out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1, default=str))
    return results


def plan(args: argparse.Namespace) -> list[tuple[str, int]]:
    """The runs to do, in order: ``--runs method:seed ...`` or every method for each seed."""
    if args.runs:
        return [(run.split(":")[0], int(run.split(":")[1])) for run in args.runs]
    return [(key, seed) for seed in args.seeds for key in args.methods]


def _matched_override(results: dict, seed: int) -> dict:
    """Top-k's rho costing what a SOFT upload measured (this seed's SOFT run, else any seed's)."""
    soft = results.get(SOFT, {})
    if not soft:
        raise ValueError("--runs: topk_matched needs a SOFT run first in the same JSON file")
    result = soft.get(str(seed), next(iter(soft.values())))
    rho = matched_rho(bits_per_client(result), list(result["adapter_shapes"].values()))
    return {RHO_KEY: rho}


def merge(paths: list[Path]) -> dict[str, dict[str, dict]]:
    """The runs of several JSON files (written by separate processes) in one dict."""
    merged: dict[str, dict[str, dict]] = {}
    for path in paths:
        for name, runs in json.loads(path.read_text())["results"].items():
            for seed, result in runs.items():
                if seed in merged.get(name, {}):
                    raise ValueError(f"--merge: {name} seed {seed} is in two files ({path})")
                merged.setdefault(name, {})[seed] = result
    return {
        name: dict(sorted(merged[name].items(), key=lambda item: int(item[0])))
        for name in ORDER
        if name in merged
    }


def curve(result: dict) -> tuple[list[float], list[float]]:
    """Cumulative uplink bits and held-out perplexity, from before round 1 to the last round."""
    bits = [0.0] + [r["comm/uplink_bits_cumulative"] for r in result["rounds"]]
    return bits, list(result["perplexity"])


def targets(fedavg: dict, fractions=FRACTIONS) -> list[tuple[str, int, float]]:
    """``(label, round, perplexity)``: the best held-out perplexity FedAvg reached within each
    fraction of the rounds it took to its best, then :data:`EQUAL`.

    Fractions of the rounds *to its best*, not of all its rounds: once local training overfits
    and FedAvg's curve rises again, its best so far stops moving, and fractions of a longer run
    would all name that same best. Within the rounds to its best the running minimum is taken
    (a noisy rise keeps the quality already reached, as early stopping would).
    """
    best = min(fedavg["perplexity"][1:])
    best_round = fedavg["perplexity"].index(best, 1)
    out = []
    for fraction in fractions:
        t = max(1, math.ceil(fraction * best_round))
        label = STRICT if fraction == 1.0 else f"FedAvg by {fraction:.0%} of its rounds to best"
        out.append((label, t, min(fedavg["perplexity"][1 : t + 1])))
    out.append((EQUAL, first_reach(fedavg, (1 + TOLERANCE) * best), (1 + TOLERANCE) * best))
    return out


def first_reach(result: dict, target: float) -> int | None:
    """The round (0: before round 1) after which the held-out perplexity first is <= ``target``."""
    for t, ppl in enumerate(result["perplexity"]):
        if ppl <= target:
            return t
    return None


def bits_to_target(result: dict, target: float) -> float | None:
    """Cumulative uplink bits when the held-out perplexity first is <= ``target`` (None: never)."""
    t = first_reach(result, target)
    return None if t is None else curve(result)[0][t]


def savings(results: dict) -> dict[str, dict[str, list]]:
    """Per method and target fraction, one entry per seed: bits to target and saving vs FedAvg.

    The targets of a seed come from FedAvg's run of that seed; the saving is
    ``1 - bits(method) / bits(FedAvg)`` at the same target (None if the method never reached it);
    ``saving_late`` is the saving had the method reached it one round later (one round of its
    mean bits more): the resolution of a first-reach round on a noisy curve.
    """
    out: dict[str, dict[str, list]] = {}
    for seed, base in results[FEDAVG].items():
        for label, _, target in targets(base):
            ref = bits_to_target(base, target)
            for name, runs in results.items():
                if seed in runs:
                    entry = _entry(runs[seed], target, ref)
                    out.setdefault(name, {}).setdefault(label, []).append(
                        {"seed": int(seed), "target": target, **entry}
                    )
    return out


def _entry(result: dict, target: float, ref: float) -> dict:
    t = first_reach(result, target)
    if t is None:
        return {"round": None, "bits": None, "saving": None, "saving_late": None}
    bits = curve(result)[0][t]
    per_round = result["total_bits"] / max(1, len(result["rounds"]))
    return {
        "round": t,
        "bits": bits,
        "saving": 1 - bits / ref,
        "saving_late": 1 - (bits + per_round) / ref,
    }


def table(results: dict[str, dict[str, dict]], budget_s: float | None = None) -> str:
    """Markdown tables (bits to target, final quality) and the verdict on the paper's claims
    (TSFA's latency against ``budget_s``, its T_bar, when given)."""
    saved = savings(results)
    head = " | ".join(f"to {label}" for label in saved[FEDAVG])
    lines = [f"| method | {head} |", "|---" * (1 + len(saved[FEDAVG])) + "|"]
    for name, per_target in saved.items():
        cells = [_cell(entries) for entries in per_target.values()]
        lines.append(f"| {_label(name, results[name])} | " + " | ".join(cells) + " |")
    lines += [
        "",
        _quality_table(results),
        "",
        "Targets (FedAvg's best held-out perplexity by that round, by seed):",
    ]
    for seed, base in results[FEDAVG].items():
        text = "; ".join(f"{label} (round {t}): {p:.2f}" for label, t, p in targets(base))
        lines.append(f"- seed {seed}: before round 1 {base['perplexity'][0]:.2f}; {text}")
    lines += ["", *verdicts(results, saved)]
    if TSFA in results and budget_s is not None:
        lines.append(f"- TSFA's latency against T_bar: {latency_verdict(results[TSFA], budget_s)}")
    return "\n".join(lines) + "\n"


def _cell(entries: list[dict]) -> str:
    """``bits (saving per seed)``, ``not reached`` for a seed that never got there."""
    reached = [e for e in entries if e["bits"] is not None]
    if not reached:
        return f"not reached (0/{len(entries)} seeds)"
    mean_bits = sum(e["bits"] for e in reached) / len(reached)
    per_seed = ", ".join(
        "not reached" if e["saving"] is None else f"{round(e['saving'], 3) + 0.0:+.0%}"
        for e in entries
    )
    return f"{mean_bits:.2e} ({len(reached)}/{len(entries)}; saving {per_seed})"


def _quality_table(results: dict) -> str:
    base = results[FEDAVG]
    lines = [
        "| method | final perplexity by seed | vs FedAvg (same seed) | best perplexity by seed "
        "| best vs FedAvg's best | uplink bits per round (mean) | wall time by seed (min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        finals = [r["perplexity"][-1] for r in runs.values()]
        gaps = [
            r["perplexity"][-1] / base[s]["perplexity"][-1] - 1
            for s, r in runs.items()
            if s in base
        ]
        best = [min(r["perplexity"][1:]) for r in runs.values()]
        best_gaps = [
            min(r["perplexity"][1:]) / min(base[s]["perplexity"][1:]) - 1
            for s, r in runs.items()
            if s in base
        ]
        per_round = [r["total_bits"] / max(1, len(r["rounds"])) for r in runs.values()]
        lines.append(
            f"| {_label(name, runs)} | {_join(finals, '.2f')} | {_join(gaps, '+.1%')} "
            f"| {_join(best, '.2f')} | {_join(best_gaps, '+.1%')} "
            f"| {sum(per_round) / len(per_round):.3e} "
            f"| {_join([r['wall_s'] / 60 for r in runs.values()], '.1f')} |"
        )
    return "\n".join(lines)


def _join(values: list[float], spec: str) -> str:
    return ", ".join(format(v, spec) for v in values)


def verdicts(results: dict, saved: dict) -> list[str]:
    """One line per claim; a saving passes only if every seed reaches the target and clears 60%."""
    lines = []
    for name in (SOFT, TSFA, TSFA_32):
        if name in saved:
            lines.append(f"- {name}: {_saving_verdict(saved[name][EQUAL])}")
    if SOFT in saved and TOPK_MATCHED in saved:
        lines.append(f"- Top-k at SOFT's budget against SOFT: {_topk_verdict(results)}")
    return lines


def _saving_verdict(entries: list[dict]) -> str:
    """Passes only if every seed clears 60% even one round later; fails if every seed is below."""
    seeds = "" if len(entries) > 1 else " (one seed: the seed-to-seed spread is not measured)"
    values = [e["saving"] for e in entries]
    if any(v is None for v in values):
        missed = sum(v is None for v in values)
        return (
            f"did not come within 2% of FedAvg's best perplexity within FedAvg's rounds in "
            f"{missed}/{len(values)} seeds: fails at this size{seeds}."
        )
    late = [e["saving_late"] for e in entries]
    if min(late) >= 0.6:
        outcome = "passes (every seed >= 60%, even one round later)"
    elif max(values) < 0.6:
        outcome = "fails (every seed < 60%)"
    else:
        outcome = "within the noise (a seed, or the same seed one round later, is below 60%)"
    return (
        f"saving to within 2% of FedAvg's best perplexity {_join(values, '.1%')} by seed "
        f"({_join(late, '.1%')} one round later): {outcome}{seeds}."
    )


def _topk_verdict(results: dict) -> str:
    """SOFT against top-k at the same budget: best held-out perplexity gap against the spread
    over seeds (best: the runs overfit late, so the final round ranks the overfitting)."""
    gaps = [
        _best(results[TOPK_MATCHED][s]) - _best(r)
        for s, r in results[SOFT].items()
        if s in results[TOPK_MATCHED]
    ]
    if not gaps:
        return "no common seed."
    sign = "worse" if min(gaps) > 0 else "better" if max(gaps) < 0 else "mixed"
    text = f"top-k's best perplexity minus SOFT's by seed: {_join(gaps, '+.2f')} ({sign}); "
    if len(gaps) < 2:
        return text + "one seed: the noise is not measured, not decided."
    spread = _seed_spread(results)
    clear = sign != "mixed" and min(abs(g) for g in gaps) > spread
    return text + (
        f"largest seed-to-seed spread of a best perplexity {spread:.2f}: "
        + ("outside the noise." if clear else "within the noise, not a clear difference.")
    )


def latency_verdict(runs: dict[str, dict], budget_s: float) -> str:
    """The paper's "time-average round latency at or under T_bar": the running average after
    the last round against ``budget_s`` in every seed, with the average from round 2 on (the
    first round meets an empty virtual queue, so it minimises the error alone) and the queue
    left at the end."""
    finals, steady, queues = [], [], []
    for result in runs.values():
        latency = [r["tsfa/round_latency_s"] for r in result["rounds"]]
        finals.append(result["rounds"][-1]["tsfa/avg_latency_s"])
        steady.append(sum(latency[1:]) / max(1, len(latency) - 1))
        queues.append(result["rounds"][-1]["tsfa/queue"])
    met = sum(f <= budget_s for f in finals)
    outcome = "met" if met == len(finals) else "not met" if met == 0 else "mixed"
    return (
        f"average round latency after the last round {_join(finals, '.3f')} s by seed "
        f"(rounds 2 on: {_join(steady, '.3f')} s; virtual queue at the end "
        f"{_join(queues, '.3f')} s) against T_bar {budget_s:g} s: {outcome} "
        f"({met}/{len(finals)} seeds)."
    )


def _best(result: dict) -> float:
    """The best held-out perplexity after a round."""
    return min(result["perplexity"][1:])


def _seed_spread(results: dict) -> float:
    """The largest range over seeds of the best perplexity of FedAvg, SOFT and matched top-k."""
    spreads = []
    for name in (FEDAVG, SOFT, TOPK_MATCHED):
        best = [_best(r) for r in results.get(name, {}).values()]
        spreads.append(max(best) - min(best) if best else 0.0)
    return max(spreads)


def _label(name: str, runs: dict) -> str:
    rhos = {r.get(RHO_KEY) for r in runs.values()} - {None}
    return name if not rhos else f"{name} (rho {min(rhos):.3f})"


def plot_bits(results: dict[str, dict[str, dict]], path: Path) -> None:
    """Perplexity against cumulative bits (whole, and zoomed on the end with the 2% line), and
    the bits each method needs to reach each of FedAvg's best-so-far perplexities."""
    plt = _pyplot()
    figure, (left, zoom, right) = plt.subplots(1, 3, figsize=(16, 4.6))
    for (name, runs), marker in zip(results.items(), "osv^D", strict=False):
        style = {"marker": marker, "ms": 3, "color": f"C{list(results).index(name)}"}
        for i, (seed, result) in enumerate(runs.items()):
            style.update(ls="-" if i == 0 else ":", label=_label(name, runs) if i == 0 else None)
            for axis in (left, zoom):
                axis.plot(*curve(result), **style)
            if seed in results[FEDAVG]:
                right.plot(*_bits_to_levels(result, results[FEDAVG][seed]), **style)
    for seed, base in results[FEDAVG].items():
        equal = (1 + TOLERANCE) * _best(base)
        zoom.axhline(equal, color="grey", ls="--" if seed == "0" else ":", lw=0.8)
    best = min(_best(r) for r in results[FEDAVG].values())
    zoom.set_ylim(0.97 * best, 1.3 * best)
    left.set_title("Perplexity against bits sent (solid: seed 0, dotted: seed 1)")
    zoom.set_title("Zoom; grey: within 2% of FedAvg's best (per seed)")
    for axis in (left, zoom):
        axis.set_xlabel("cumulative uplink bits")
        axis.set_ylabel("held-out perplexity")
    right.set_xlabel("target: FedAvg's best perplexity by each round to its best (same seed)")
    right.set_ylabel("cumulative uplink bits to first reach it")
    right.set_yscale("log")
    right.invert_xaxis()
    right.set_title("Bits to target (a missing point: never reached)")
    for axis in (left, zoom, right):
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _bits_to_levels(result: dict, base: dict) -> tuple[list[float], list[float]]:
    """FedAvg's best-so-far perplexity after each round up to its best, and the bits ``result``
    needs to reach each (levels it never reaches left out; after its best, FedAvg's best so far
    no longer moves)."""
    best_round = base["perplexity"].index(_best(base), 1)
    levels = [min(base["perplexity"][1 : t + 1]) for t in range(1, best_round + 1)]
    pairs = [(p, bits_to_target(result, p)) for p in levels]
    reached = [(p, b) for p, b in pairs if b is not None]
    return [p for p, _ in reached], [b for _, b in reached]


def plot_tsfa(runs: dict[str, dict], budget_s: float, path: Path) -> None:
    """TSFA's round latency and running average by round for every seed, rho annotated."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7.2, 4.0))
    for i, (seed, result) in enumerate(runs.items()):
        rounds = result["rounds"]
        x = list(range(1, len(rounds) + 1))
        style = {"color": f"C{i}", "ms": 3}
        latency = [r["tsfa/round_latency_s"] for r in rounds]
        axis.plot(x, latency, marker="o", ls=":", label=f"round latency, seed {seed}", **style)
        average = [r["tsfa/avg_latency_s"] for r in rounds]
        axis.plot(x, average, marker="s", label=f"running average, seed {seed}", **style)
        for xi, r in zip(x, rounds, strict=True):
            axis.annotate(f"{r['tsfa/rho']:.1f}", (xi, r["tsfa/round_latency_s"]), fontsize=6)
    axis.axhline(budget_s, color="black", linestyle="--", label="T_bar (budget)")
    axis.set_xlabel("round")
    axis.set_ylabel("latency (s)")
    axis.set_title("TSFA: modelled round latency against the budget (labels: rho)")
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
    parser.add_argument(
        "--json", type=Path, help="this process's runs (default: OUT/soft_bits.json)"
    )
    parser.add_argument("--resume", action="store_true", help="reuse runs in the JSON")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--runs", nargs="+", help="explicit plan, e.g. soft:0 topk_matched:0")
    parser.add_argument(
        "--merge", nargs="+", type=Path, help="no training: merge these JSON files and report"
    )
    runner.add_scale_arguments(parser)
    args = parser.parse_args()
    _check_runs(args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        results = merge(args.merge)
        sources = {str(path): json.loads(path.read_text())["args"] for path in args.merge}
        merged = {"sources": sources, "results": results}
        (args.out / "soft_bits.json").write_text(json.dumps(merged, indent=1, default=str))
    else:
        results = run_all(args, args.json or args.out / "soft_bits.json")
    if FEDAVG not in results:
        print("no FedAvg run yet: nothing to report")
        return
    report(results, args.out)


def _check_runs(runs: list[str] | None) -> None:
    for run in runs or []:
        key, _, seed = run.partition(":")
        if key not in METHODS or not seed.isdigit():
            raise ValueError(
                f"--runs: {run!r} is not METHOD:SEED with METHOD in {sorted(METHODS)} "
                "and SEED a non-negative integer (e.g. soft:0)"
            )


def with_tsfa_at_32_bits(results: dict) -> dict:
    """The results plus :data:`TSFA_32`: SOFT + TSFA's runs with every bit count doubled."""
    if TSFA not in results:
        return results
    doubled = {}
    for seed, result in results[TSFA].items():
        rounds = [
            {**r, "comm/uplink_bits_cumulative": 2 * r["comm/uplink_bits_cumulative"]}
            for r in result["rounds"]
        ]
        doubled[seed] = {**result, "rounds": rounds, "total_bits": 2 * result["total_bits"]}
    return {**results, TSFA_32: doubled}


def tsfa_table(runs: dict[str, dict]) -> str:
    """TSFA's decisions and latencies by round, for every seed."""
    lines = [
        "| seed | round | rho | scheduled clients | round latency (s) | running average (s) "
        "| virtual queue (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for seed, result in runs.items():
        for t, r in enumerate(result["rounds"], start=1):
            lines.append(
                f"| {seed} | {t} | {r['tsfa/rho']:.1f} | {r['tsfa/scheduled_clients']:.0f} "
                f"| {r['tsfa/round_latency_s']:.3f} | {r['tsfa/avg_latency_s']:.3f} "
                f"| {r['tsfa/queue']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def tsfa_summary(runs: dict[str, dict], budget_s: float) -> str:
    """TSFA by seed in one row each: the rho it chose, rounds over ``budget_s``, latency and
    virtual queue (the by-round table is :func:`tsfa_table`)."""
    lines = [
        "| seed | rounds | rho chosen (mean; min-max) | rounds over T_bar | largest round latency "
        "(s) | running average at the end (s) | largest virtual queue (s) | queue at the end (s) "
        "| rounds by clients scheduled |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for seed, result in runs.items():
        rounds = result["rounds"]
        rho = [r["tsfa/rho"] for r in rounds]
        latency = [r["tsfa/round_latency_s"] for r in rounds]
        queue = [r["tsfa/queue"] for r in rounds]
        scheduled = [int(r["tsfa/scheduled_clients"]) for r in rounds]
        by_count = ", ".join(f"{n}: {scheduled.count(n)}" for n in sorted(set(scheduled)))
        lines.append(
            f"| {seed} | {len(rounds)} | {sum(rho) / len(rho):.2f}; {min(rho):.1f}-{max(rho):.1f} "
            f"| {sum(x > budget_s for x in latency)} | {max(latency):.3f} "
            f"| {rounds[-1]['tsfa/avg_latency_s']:.3f} | {max(queue):.3f} | {queue[-1]:.3f} "
            f"| {by_count} |"
        )
    return "\n".join(lines) + "\n"


def report(results: dict, out: Path) -> None:
    """Tables, verdicts and figures of the merged runs."""
    tsfa = runner.load_config("soft_tsfa.yaml")["trainer"]["callbacks"][1]["init_args"]
    budget_s = tsfa["latency_budget_s"]
    text = table(with_tsfa_at_32_bits(results), budget_s)
    if TSFA in results:
        text += "\n" + tsfa_summary(results[TSFA], budget_s)
        text += "\n" + tsfa_table(results[TSFA])
    (out / "soft_bits.md").write_text(text)
    plot_bits(results, out / "soft_bits.png")
    if TSFA in results:
        plot_tsfa(results[TSFA], budget_s, out / "tsfa_latency.png")
    print(text)


if __name__ == "__main__":
    main()
