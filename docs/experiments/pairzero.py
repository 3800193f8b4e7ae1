"""pAirZero: zeroth-order federated fine-tuning over the air against SNR, schedule, FO baselines.

Runs (SmolLM2-135M, LoRA factors plus the classification head; configs/pairzero_*.yaml on
``--task``: ``bbc`` = BBC News 5-class accuracy, 5 Dirichlet(0.5) clients, as the paper's SST-2
accuracy; ``shakespeare`` = held-out perplexity, 5 roles as clients): Perfect (noise-free mean of
the scalars, no privacy), analog pAirZero and Sign-pAirZero at each ``--snrs`` value (the maximum
mean SNR at full power, Rayleigh fading, truncation 10 dB below it, (epsilon, delta) = (5, 0.01)
spent along the optimised schedule), analog pAirZero at ``--schedule-snr`` with the Static and
Reversed schedules, and the FO-Adam and FO-SGD baselines on the same clients and minibatches.
Records the held-out metric before round 1, every ``--val-every`` rounds and after the last one,
the error of the broadcast scalars against their noise-free mean (per round), sign flips,
epsilon and uplink bits per client per round.

    python docs/experiments/pairzero.py --task bbc --rounds 60 --snrs 0 10 20 --threads 1
    python docs/experiments/pairzero.py --task bbc --rounds 8000 --snrs 0 5 10 15 20 ...  # paper

Runs are saved to the JSON one by one; ``--resume`` skips those already there. Writes
docs/figures/pairzero_<task>.json, .md (table) and .png (metric against maximum SNR; scalar
error per round).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import runner
import torch

from lit_airlora.federated.stages import StageCallback
from lit_airlora.zeroth_order.local_update import SCALAR_KEY

TASKS = {
    "bbc": ["quickstart.yaml", "classification_bbc.yaml", "pairzero/task.yaml"],
    "shakespeare": ["quickstart.yaml", "pairzero/task.yaml"],
}
CALLBACK = "trainer.callbacks.0.init_args."
PAPER_CLIP = 100.0  # gamma
ZO = "model.init_args.zeroth_order.init_args."


def runs(args) -> dict[str, tuple[list[str], dict]]:
    """Run name -> (config files as the header commands compose them, dotted overrides)."""
    task = TASKS[args.task]
    zo = [*task, "pairzero/zeroth_order.yaml"]
    out = {"Perfect": ([*zo, "pairzero_perfect.yaml"], {ZO + "learning_rate": args.zo_lr})}
    for snr in sorted(args.snrs, reverse=True):  # the paper's regime (high SNR) first
        for label, name in (("Analog", "pairzero_analog.yaml"), ("Sign", "pairzero_sign.yaml")):
            out[f"{label} {snr:g} dB"] = ([*zo, name], channel(snr, "optimised", label, args))
    for schedule in ("static", "reversed"):
        overrides = channel(args.schedule_snr, schedule, "Analog", args)
        out[f"Analog {args.schedule_snr:g} dB, {schedule}"] = (
            [*zo, "pairzero_analog.yaml"],
            overrides,
        )
    if args.clip != PAPER_CLIP:  # the paper's gamma once, beside the gamma sized from the scalars
        out[f"Analog {args.schedule_snr:g} dB, gamma {PAPER_CLIP:g}"] = (
            [*zo, "pairzero_analog.yaml"],
            {**channel(args.schedule_snr, "optimised", "Analog", args), ZO + "clip": PAPER_CLIP},
        )
    out["FO-Adam"] = (
        [*task, "pairzero_fo_adam.yaml"],
        {"model.init_args.learning_rate": args.fo_lr},
    )
    out["FO-SGD"] = (
        [*task, "pairzero_fo_sgd.yaml"],
        {"model.init_args.optimizer.init_args.lr": args.fo_sgd_lr},
    )
    return out


def channel(snr_db: float, schedule: str, label: str, args) -> dict:
    return {
        CALLBACK + "large_scale.init_args.snr_db": float(snr_db),
        CALLBACK + "min_gain_db": float(snr_db) - 10.0,
        CALLBACK + "privacy.init_args.schedule": schedule,
        CALLBACK + "privacy.init_args.epsilon": args.epsilon,
        CALLBACK + "privacy.init_args.contraction": args.contraction,
        ZO + "learning_rate": args.sign_lr if label == "Sign" else args.zo_lr,
    }


def scale(args) -> dict:
    data = "data.init_args."
    return {
        "trainer.max_epochs": args.rounds,
        "trainer.check_val_every_n_epoch": args.val_every or args.rounds,
        data + "seq_len": args.seq_len,
        data + "batch_size": args.batch_size,
        data + "val_fraction": args.val_fraction,
        data + "max_samples_per_client": args.max_samples,
        ZO + "num_perturbations": args.perturbations,
        ZO + "clip": args.clip,
    }


class ScalarObserver(StageCallback):
    """Logs the clients' clipped scalars before the channel: ``zo/abs_scalar`` (mean of |g_k|),
    ``zo/max_abs_scalar`` and ``zo/clean_mean`` (their noise-free mean), to size gamma."""

    def on_round_end(self, trainer, pl_module, ctx) -> None:
        ctx.metrics["time/round_end_s"] = time.perf_counter()  # gaps give round and eval times
        values = [u.tensors[SCALAR_KEY].abs() for u in ctx.uploads if SCALAR_KEY in u.tensors]
        if values:
            stacked = torch.cat(values).double()
            clean = ctx.ideal_aggregate[SCALAR_KEY].double()
            ctx.metrics["zo/abs_scalar"] = float(stacked.mean())
            ctx.metrics["zo/max_abs_scalar"] = float(stacked.max())
            ctx.metrics["zo/clean_mean"] = float(clean.mean())


def summarise(name: str, result: dict) -> dict:
    rounds, history = result["rounds"], result["history"]
    last = rounds[-1] if rounds else {}
    return {
        "run": name,
        "snr_db": _snr(name),
        "rounds": len(rounds),
        "metric_start": history[0],
        "metric_end": history[-1],
        "metric_by_validation": history,
        "agg_mse": runner.mean_metric(result, "channel/agg_mse"),
        "agg_mse_by_round": [r.get("channel/agg_mse", math.nan) for r in rounds],
        "abs_scalar_by_round": [r.get("zo/abs_scalar", math.nan) for r in rounds],
        "max_abs_scalar_by_round": [r.get("zo/max_abs_scalar", math.nan) for r in rounds],
        "clean_mean_by_round": [r.get("zo/clean_mean", math.nan) for r in rounds],
        "epsilon_by_round": [r.get("privacy/epsilon", math.inf) for r in rounds],
        "train_loss_by_round": [r.get("round/train_loss", math.nan) for r in rounds],
        "round_end_s": [r.get("time/round_end_s", math.nan) for r in rounds],
        "sign_flip_rate": runner.mean_metric(result, "channel/sign_flip_rate"),
        "epsilon": last.get("privacy/epsilon", math.inf),
        "bits_per_client_round": runner.mean_metric(result, "comm/uplink_bits_per_client"),
        "wall_s": result["wall_s"],
        "val_examples": result.get("val_examples"),
    }


def _snr(name: str) -> float:
    words = name.replace(",", "").split()
    return float(words[1]) if len(words) > 2 and words[2] == "dB" else math.nan


def table(rows: list[dict], metric: str, at_rounds: Sequence[int] = ()) -> str:
    """Markdown table: the metric before round 1, after the last round and at ``at_rounds``
    (blank where a run did not validate); accuracy carries its binomial standard error
    ``sqrt(p (1 - p) / n)``."""
    extra = "".join(f" {metric} at round {n} |" for n in at_rounds)
    lines = [
        f"| run | rounds | {metric} before | {metric} after |{extra} scalar MSE | sign flips "
        "| epsilon | bits/client/round | wall (min) |",
        "|---|---|---|---|" + "---|" * len(at_rounds) + "---|---|---|---|---|",
    ]
    for r in rows:
        flips = "" if math.isnan(r["sign_flip_rate"]) else f"{r['sign_flip_rate']:.3f}"
        mse = "" if math.isnan(r["agg_mse"]) else f"{r['agg_mse']:.3g}"
        eps = "inf (no noise)" if math.isinf(r["epsilon"]) else f"{r['epsilon']:.3f}"
        at = "".join(f" {_value(r, metric_at(r, n), metric)} |" for n in at_rounds)
        lines.append(
            f"| {r['run']} | {r['rounds']} | {r['metric_start']:.3f} "
            f"| {_value(r, r['metric_end'], metric)} |{at} {mse} | {flips} | {eps} "
            f"| {r['bits_per_client_round']:.3g} | {r['wall_s'] / 60:.1f} |"
        )
    return "\n".join(lines)


def metric_at(row: dict, round_idx: int) -> float:
    """The held-out metric after round ``round_idx`` (NaN if the run did not validate then)."""
    every = row.get("val_every") or row["rounds"]
    rounds = [min(i * every, row["rounds"]) for i in range(len(row["metric_by_validation"]))]
    return row["metric_by_validation"][rounds.index(round_idx)] if round_idx in rounds else math.nan


def _value(row: dict, p: float, metric: str) -> str:
    if math.isnan(p):
        return ""
    n = row.get("val_examples")
    if metric != "accuracy" or not n:
        return f"{p:.3f}"
    return f"{p:.3f} ± {math.sqrt(p * (1 - p) / n):.3f}"


def figure(rows: list[dict], metric: str, path: Path, at_round: int | None = None) -> None:
    """Metric against SNR (at ``at_round`` where a run validated then, else after its last
    round), metric by round, broadcast error against signal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 4.5))
    _by_snr(left, rows, metric, at_round)
    for r in rows:
        history = r["metric_by_validation"]
        x = [min(i * (r.get("val_every") or r["rounds"]), r["rounds"]) for i in range(len(history))]
        style = "--" if r["run"] in _BASELINES else "-"
        middle.plot(x, history, style, marker=".", label=r["run"], color=_colour(r["run"]))
    middle.set_xlabel("round")
    middle.set_ylabel(f"held-out {metric}")
    middle.set_yscale("log" if metric == "perplexity" else "linear")
    middle.legend(fontsize=6)
    for r in rows:
        if r["run"].startswith("Analog") and not math.isnan(r["agg_mse"]):
            right.semilogy([math.sqrt(v) for v in r["agg_mse_by_round"]], lw=0.8, label=r["run"])
    for r in rows:
        if r["run"] == "Perfect":
            right.semilogy([abs(v) for v in r["clean_mean_by_round"]], "k.", ms=3,
                           label="|noise-free mean scalar| (Perfect)")  # fmt: skip
    right.set_xlabel("round")
    right.set_ylabel("error std of the broadcast scalar")
    right.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _by_snr(ax, rows: list[dict], metric: str, at_round: int | None) -> None:
    def value(row: dict) -> float:
        at = metric_at(row, at_round) if at_round is not None else math.nan
        return row["metric_end"] if math.isnan(at) else at

    for label, marker in (("Analog", "o"), ("Sign", "s")):
        points = sorted(
            (r["snr_db"], value(r))
            for r in rows
            if r["run"].startswith(label) and not math.isnan(r["snr_db"]) and "," not in r["run"]
        )  # the optimised schedule; the others are marked apart
        if points:
            ax.plot(*zip(*points, strict=True), marker=marker, label=f"{label} (optimised)")
    for r in rows:
        if "," in r["run"]:  # static, reversed, the paper's gamma
            snr = float(r["run"].split()[1])
            ax.scatter([snr], [value(r)], marker="x", label=r["run"], zorder=3)
        elif math.isnan(r["snr_db"]):  # Perfect and the first-order baselines
            ax.axhline(value(r), ls="--", lw=0.8, label=r["run"], color=_colour(r["run"]))
    ax.axhline(rows[0]["metric_start"], color="k", lw=0.5, label="before round 1")
    ax.set_xlabel("maximum mean SNR (dB)")
    where = f"at round {at_round}" if at_round is not None else "after the last round"
    ax.set_ylabel(f"held-out {metric} {where}")
    ax.legend(fontsize=6)


_BASELINES = ("Perfect", "FO-Adam", "FO-SGD")


def _colour(name: str) -> str | None:
    return {"Perfect": "k", "FO-Adam": "tab:red", "FO-SGD": "tab:purple"}.get(name)


def merge(paths: list[str], out: Path, val_examples: int | None = None) -> dict:
    """One record from several runs' JSON files (each written by its own process);
    ``val_examples`` fills the held-out count of records written before it was stored."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    for part in parts:
        for row in part["runs"]:
            row.setdefault("val_every", part["args"]["val_every"])
            if row.get("val_examples") is None:
                row["val_examples"] = val_examples
    runs = sorted((row for part in parts for row in part["runs"]), key=_order)
    merged = {"args": [part["args"] for part in parts], "sources": paths, "runs": runs}
    out.with_suffix(".json").write_text(json.dumps(merged, indent=1))
    return merged


def _order(row: dict) -> tuple:
    name = row["run"]
    kind = next((i for i, k in enumerate(("Perfect", "Analog", "Sign")) if name.startswith(k)), 3)
    snr = -row["snr_db"] if not math.isnan(row["snr_db"]) else 0.0
    return (kind, "," in name, snr, name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="bbc")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--val-every", type=int, default=0, help="0: before and after only")
    parser.add_argument("--snrs", type=float, nargs="+", default=[0.0, 10.0, 20.0])
    parser.add_argument("--schedule-snr", type=float, default=20.0)
    parser.add_argument("--epsilon", type=float, default=5.0)
    parser.add_argument("--contraction", type=float, default=0.95)
    parser.add_argument("--perturbations", type=int, default=1)
    parser.add_argument("--clip", type=float, default=100.0, help="gamma (the paper: 100)")
    parser.add_argument("--zo-lr", type=float, default=1e-4)
    parser.add_argument("--sign-lr", type=float, default=1e-4)
    parser.add_argument("--fo-lr", type=float, default=1e-3, help="FO-Adam step size")
    parser.add_argument("--fo-sgd-lr", type=float, default=0.05)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--val-fraction", type=float, default=0.3)
    parser.add_argument("--max-samples", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="+", help="run only these names")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--out", help="output stem (default docs/figures/pairzero_<task>)")
    parser.add_argument(
        "--merge", nargs="+", help="JSON files of separate processes: merge into --out, no runs"
    )
    parser.add_argument(
        "--at-rounds", type=int, nargs="*", default=[], help="table columns: metric at these rounds"
    )
    parser.add_argument(
        "--val-examples", type=int, help="with --merge: held-out count for records without it"
    )
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    out = Path(args.out or runner.FIGURES / f"pairzero_{args.task}")
    metric = "accuracy" if args.task == "bbc" else "perplexity"
    raw = merge(args.merge, out, args.val_examples) if args.merge else train(args, out)
    out.with_suffix(".md").write_text(table(raw["runs"], metric, args.at_rounds) + "\n")
    at_round = args.at_rounds[0] if args.at_rounds else None
    figure(raw["runs"], metric, out.with_suffix(".png"), at_round)
    print(table(raw["runs"], metric, args.at_rounds))


def train(args, out: Path) -> dict:
    """Runs every configured run not yet in the JSON (``--resume``), saving after each one."""
    from lit_airlora.cli import compose_config

    raw = json.loads(out.with_suffix(".json").read_text()) if args.resume else {"runs": []}
    raw["args"] = vars(args)
    done = {r["run"] for r in raw["runs"]}
    for name, (files, overrides) in runs(args).items():
        if name in done or (args.only and name not in args.only):
            continue
        config = compose_config(*(runner.CONFIGS / f for f in files))
        overrides = {**scale(args), **overrides}
        if config["model"]["init_args"].get("zeroth_order") is None:  # first-order baselines
            overrides = {k: v for k, v in overrides.items() if "zeroth_order" not in k}
        result = runner.run(
            config, overrides, f"{out.name}_{len(done)}", args.threads,
            after_fit=_val_size, observers=[ScalarObserver()],
        )  # fmt: skip
        raw["runs"].append({**summarise(name, result), "val_every": args.val_every or args.rounds})
        done.add(name)
        out.with_suffix(".json").write_text(json.dumps(raw, indent=1))
        r = raw["runs"][-1]
        print(f"{name}: {r['metric_start']:.3f} -> {r['metric_end']:.3f}", flush=True)
    return raw


def _val_size(cli) -> dict:
    return {"val_examples": len(cli.datamodule.val_set)}


if __name__ == "__main__":
    main()
