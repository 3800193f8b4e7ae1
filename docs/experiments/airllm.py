"""AirLLM: held-out accuracy and cumulative transmission cost per rank policy and SNR.

Remote fine-tuning (configs/airllm/remote.yaml: SmolLM2-135M as a 5-way BBC News classifier,
SVD-form LoRA on all 210 linear layers of the blocks plus the head, one edge device, one local
step per round) over AirLLM's capacity-limited link (configs/airllm/environment.yaml). Methods
are the configs/airllm_*.yaml files: fixed ranks 1/2/4/8, capacity-greedy, random-feasible,
PPO-only and the hierarchical PPO + DDIM policy. One run per (method, SNR), the SNR fixed per
run (FixedSNR) as in the paper. A fixed-rank run trains the same way at every SNR (its ranks
never change and it never skips; the link is capacity accounting, no noise), so it is trained
once and priced at every SNR (``--no-share-fixed`` trains it per SNR).

Cost: the normalised cost ``c = bits / (C tau)`` of every round whose adapter was sent (an
infeasible choice of the skipping policies sends nothing: c = 0 that round, counted as
skipped); fixed ranks always send, so their over-budget rounds (c > 1) are counted as
violations. The ledger's bits (adapter and head as sent) are kept too. The agent's decision
and update time per round is measured against the wall time of the round.

    python docs/experiments/airllm.py                                  # the configs' scale
    python docs/experiments/airllm.py --rounds 30 --seq-len 32 --batch-size 4

Writes docs/figures/airllm.json (raw), airllm.md (table) and airllm.png (accuracy and cost per
SNR). Runs are saved one by one; ``--resume`` skips those already in the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import lightning as L
import runner
import yaml

METHODS = {
    "fixed r=1": "airllm_fixed_rank1.yaml",
    "fixed r=2": "airllm_fixed_rank2.yaml",
    "fixed r=4": "airllm_fixed_rank4.yaml",
    "fixed r=8": "airllm_fixed_rank8.yaml",
    "capacity-greedy": "airllm_capacity_greedy.yaml",
    "random-feasible": "airllm_random_feasible.yaml",
    "PPO-only": "airllm_ppo.yaml",
    "AirLLM (PPO + DDIM)": "airllm_hierarchical.yaml",
}
FIXED = ("fixed r=1", "fixed r=2", "fixed r=4", "fixed r=8")
LEARNED = ("PPO-only", "AirLLM (PPO + DDIM)")
OUT = runner.FIGURES / "airllm"


def composed(config_name: str) -> dict:
    from lit_airlora.cli import compose_config

    base = runner.CONFIGS / "quickstart.yaml"
    return compose_config(
        base, runner.CONFIGS / "airllm" / "remote.yaml", runner.CONFIGS / config_name
    )


def overrides(args, config: dict, snr_db: float) -> dict:
    data, policy = "data.init_args.", "trainer.callbacks.0.init_args.policy.init_args."
    out = {
        "trainer.max_epochs": args.rounds,
        "trainer.check_val_every_n_epoch": args.rounds,  # held-out accuracy at the end only
        "model.init_args.learning_rate": args.lr,
        data + "seq_len": args.seq_len,
        data + "batch_size": args.batch_size,
        data + "max_samples_per_client": args.max_samples,
        data + "val_fraction": args.val_fraction,
        "trainer.callbacks.0.init_args.large_scale": {
            "class_path": "lit_airlora.channel.large_scale.FixedSNR",
            "init_args": {"snr_db": float(snr_db)},
        },
        "trainer.callbacks.0.init_args.heatmap_every_n_rounds": 0,
    }
    policy_args = config["trainer"]["callbacks"][0]["init_args"]["policy"]["init_args"]
    if "episode_length" in policy_args:
        out[policy + "episode_length"] = args.episode_length
    if "ddim" in policy_args:
        out[policy + "ddim.warmup"] = min(args.warmup, policy_args["ddim"]["buffer_size"])
    return out


class RoundTimer(L.Callback):
    """Wall time of every round and the policy's decision/update time in it."""

    def __init__(self, rank_callback) -> None:
        self.rank_callback, self.rounds = rank_callback, []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        policy = self.rank_callback.policy
        decided = policy.metrics().get("decision_time_s", 0.0)
        recorded = policy.update_metrics().get("record_time_s", 0.0)
        self.rounds.append(
            {
                "wall_s": time.perf_counter() - self.start,
                "agent_s": decided + recorded,
                "skipped": float(pl_module.round_metrics.get("round/skipped", 0.0)),
                "train_loss": float(pl_module.round_metrics.get("round/train_loss", math.nan)),
                "uplink_bits": float(pl_module.round_metrics.get("comm/uplink_bits", 0.0)),
            }
        )


def run_one(args, method: str, snr_db: float) -> dict:
    """Train one (method, SNR) run; returns accuracy, ranks, per-round timing and bits."""
    import torch

    from lit_airlora.cli import TRAINER_DEFAULTS, AirLoRACLI

    torch.set_num_threads(args.threads)
    config = composed(METHODS[method])
    name = f"airllm_{METHODS[method][7:-5]}_{snr_db:g}dB"
    run_dir = runner.SCRATCH / name
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    prepared = runner.prepared_config(config, overrides(args, config, snr_db), run_dir)
    path.write_text(yaml.safe_dump(prepared))
    cli = AirLoRACLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        trainer_defaults=TRAINER_DEFAULTS,
        save_config_callback=None,
        args=["--config", str(path)],
    )
    rank_cb = cli.trainer.callbacks[0]
    timer = RoundTimer(rank_cb)
    cli.trainer.callbacks.append(timer)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    model = cli.model
    return {
        "method": method,
        "snr_db": snr_db,
        "trained_at_snr_db": snr_db,
        "start_accuracy": model.history[0],
        "final_accuracy": model.history[-1],
        "final_f1_macro": float(model.last_metrics.get("val/f1_macro", math.nan)),
        "final_val_loss": float(model.last_metrics.get("val/loss", math.nan)),
        "ledger_bits": float(model.ledger.total_bits),
        "rank_history": {n: list(h) for n, h in rank_cb.rank_history.items()},
        "shapes": {n: list(v) for n, v in shapes_of(model).items()},
        "max_rank": int(model.max_rank),
        "rounds": timer.rounds,
        "wall_s": time.perf_counter() - start,
    }


def shapes_of(model) -> dict:
    from lit_airlora.policy.adapter_state import module_shapes

    return module_shapes(model.lora_layers)


def priced(run: dict, snr_db: float) -> dict:
    """``run`` with the cost of every sent round at ``snr_db`` (AirLLM's cost model)."""
    import torch

    from lit_airlora.policy.airllm_env import AirLLMEnvironment
    from lit_airlora.policy.observation import Observation

    env = AirLLMEnvironment(**environment_args())
    shapes = {n: tuple(v) for n, v in run["shapes"].items()}
    costs = []
    for k, timing in enumerate(run["rounds"]):
        ranks = {n: h[k] for n, h in run["rank_history"].items()}
        obs = Observation(
            round_idx=k,
            ranks=ranks,
            max_rank=run["max_rank"],
            shapes=shapes,
            snr_db=torch.tensor([float(snr_db)], dtype=torch.float64),
        )
        costs.append(0.0 if timing["skipped"] else env.cost(ranks, obs))
    history = run["rank_history"].values()
    agent = [r["agent_s"] / r["wall_s"] for r in run["rounds"][1:]] or [0.0]
    return run | {
        "snr_db": snr_db,
        "costs": costs,
        "cumulative_cost": sum(costs),
        "over_budget_rounds": sum(c > 1.0 for c in costs),
        "skipped_rounds": int(sum(r["skipped"] for r in run["rounds"])),
        "mean_rank": statistics.fmean(statistics.fmean(h) for h in history),
        "agent_fraction_median": statistics.median(agent),
        "agent_fraction_total": sum(r["agent_s"] for r in run["rounds"])
        / sum(r["wall_s"] for r in run["rounds"]),
    }


def environment_args() -> dict:
    """The shared cost model's arguments (every AirLLM config prices with the same file)."""
    text = (runner.CONFIGS / "airllm" / "environment.yaml").read_text()
    return {
        k: (tuple(v) if isinstance(v, list) else v)
        for k, v in yaml.safe_load(text)["init_args"].items()
    }


def table(results: list[dict], snrs: list[float]) -> str:
    lines = [
        "| method | " + " | ".join(f"{s:g} dB: acc / cost" for s in snrs) + " |",
        "|---|" + "---|" * len(snrs),
    ]
    for method in METHODS:
        cells = []
        for snr in snrs:
            hit = [r for r in results if r["method"] == method and r["snr_db"] == snr]
            if not hit:
                cells.append("-")
                continue
            r = hit[0]
            marks = ""
            if r["over_budget_rounds"]:
                marks = f" ({r['over_budget_rounds']} over)"
            elif r["skipped_rounds"]:
                marks = f" ({r['skipped_rounds']} skip)"
            cells.append(f"{r['final_accuracy']:.3f} / {r['cumulative_cost']:.2f}{marks}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(results: list[dict], snrs: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for method in METHODS:
        rows = sorted((r for r in results if r["method"] == method), key=lambda r: r["snr_db"])
        if not rows:
            continue
        x = [r["snr_db"] for r in rows]
        style = "-o" if method in LEARNED else "--."
        left.plot(x, [r["final_accuracy"] for r in rows], style, label=method)
        right.plot(x, [max(r["cumulative_cost"], 1e-3) for r in rows], style, label=method)
    left.set(xlabel="SNR (dB)", ylabel="held-out accuracy after the run", xticks=snrs)
    right.set(xlabel="SNR (dB)", ylabel="cumulative normalised cost", xticks=snrs, yscale="log")
    right.text(0.02, 0.02, "cost 0 (nothing sent) drawn at 1e-3", transform=right.transAxes)
    left.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def count(minimum: int):
    """argparse type: an integer >= ``minimum`` (the house message otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"({text!r}) must be an integer >= {minimum}.")
        return value

    return parse


def number(valid, what: str):
    """argparse type: a float for which ``valid`` holds ("must be ``what``" otherwise)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not valid(value):
            raise argparse.ArgumentTypeError(f"({text!r}) must be {what}.")
        return value

    return parse


fraction = number(lambda v: 0.0 < v < 1.0, "a number in (0, 1)")
positive = number(lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
snr = number(math.isfinite, "a finite SNR in dB, e.g. -5")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snrs", type=snr, nargs="+", default=[-5.0, 0.0, 5.0, 10.0, 15.0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--rounds", type=count(1), default=30)
    parser.add_argument("--episode-length", type=count(1), default=15)
    parser.add_argument("--warmup", type=count(1), default=128, help="DDIM replay warm-up")
    parser.add_argument("--seq-len", type=count(1), default=64)
    parser.add_argument("--batch-size", type=count(1), default=8)
    parser.add_argument("--max-samples", type=count(2), default=1000)
    parser.add_argument("--val-fraction", type=fraction, default=0.1)
    parser.add_argument("--lr", type=positive, default=1e-3, help="AdamW learning rate")
    # One intra-op thread: on a shared, oversubscribed CPU two threads made each small matmul
    # about 20x slower (measured: 8-token rounds of 230-290 s with 2 threads, 8-14 s with 1).
    parser.add_argument("--threads", type=count(1), default=1)
    parser.add_argument(
        "--no-share-fixed",
        dest="share_fixed",
        action="store_false",
        help="train fixed ranks at every SNR instead of once (their training ignores the SNR)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument(
        "--plot-only", action="store_true", help="redraw the table and figure from the JSON"
    )
    return parser.parse_args(argv)


#: Method order within a group of SNRs.
ORDER = (*FIXED, "AirLLM (PPO + DDIM)", "capacity-greedy", "PPO-only", "random-feasible")


def runs_to_do(args) -> list[tuple[str, float]]:
    """(method, SNR) pairs: the SNRs up to the median first (where the paper's claim is
    clearest), every method there (``ORDER``), then the higher SNRs; so a run cut short still
    compares every method at low SNR. A shared fixed rank trains once, at the first SNR."""
    median = statistics.median(args.snrs)
    todo = []
    for high in (False, True):
        for method in sorted(args.methods, key=ORDER.index):
            for snr_db in args.snrs:
                if (snr_db > median) != high:
                    continue
                if args.share_fixed and method in FIXED and snr_db != args.snrs[0]:
                    continue
                todo.append((method, snr_db))
    return todo


def save(args, results: list[dict]) -> None:
    """The JSON (with the arguments of the runs; kept as it is with ``--plot-only``), table and
    figure."""
    if not args.plot_only:
        meta = {"args": vars(args) | {"out": str(args.out)}, "results": results}
        args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    args.out.with_suffix(".md").write_text(table(results, args.snrs) + "\n")
    figure(results, args.snrs, args.out.with_suffix(".png"))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    json_path = args.out.with_suffix(".json")
    resume = (args.resume or args.plot_only) and json_path.exists()
    results = json.loads(json_path.read_text())["results"] if resume else []
    for method, snr_db in [] if args.plot_only else runs_to_do(args):
        if any(r["method"] == method and r["trained_at_snr_db"] == snr_db for r in results):
            continue
        run = run_one(args, method, snr_db)
        shared = args.share_fixed and method in FIXED
        for price_snr in args.snrs if shared else [snr_db]:
            results.append(priced(run, price_snr))
        save(args, results)
        print(
            f"{method:22s} {snr_db:5g} dB  acc {run['final_accuracy']:.3f}  "
            f"cost {priced(run, snr_db)['cumulative_cost']:.2f}  {run['wall_s']:.0f} s",
            flush=True,
        )
    save(args, results)


if __name__ == "__main__":
    main()
