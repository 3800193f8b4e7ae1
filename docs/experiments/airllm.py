"""AirLLM: held-out loss and cumulative transmission cost per rank policy and SNR.

Remote fine-tuning (configs/airllm/remote.yaml: SmolLM2-135M, LoRA on all 210 linear layers of
the blocks, BBC News, one edge device, one local step per round) over AirLLM's capacity-limited
link (configs/airllm/environment.yaml). Methods are the configs/airllm_*.yaml files: fixed ranks
1/2/4/8, capacity-greedy, random-feasible, PPO-only and the hierarchical PPO + DDIM policy. One
run per (method, SNR), the SNR fixed per run (FixedSNR) as in the paper.

Cost: the normalised cost ``c = bits / (C tau)`` of every round whose adapter was sent (an
infeasible choice of the skipping policies sends nothing: c = 0 that round, counted as
skipped); fixed ranks and capacity-greedy always send, so their over-budget rounds (c > 1) are
counted as violations. The agent's decision and update time per round is measured against the
wall time of the round.

    python docs/experiments/airllm.py                                  # the paper's scale
    python docs/experiments/airllm.py --rounds 8 --episode-length 4 --seq-len 32 --batch-size 4

Writes docs/figures/airllm.json (raw), airllm.md (table) and airllm.png (loss and cost per SNR).
Runs are saved one by one; ``--resume`` skips those already in the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
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
        "trainer.check_val_every_n_epoch": args.rounds,  # held-out loss at the end only
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
            }
        )


def run_one(args, method: str, snr_db: float) -> dict:
    import torch

    from lit_airlora.cli import TRAINER_DEFAULTS, AirLoRACLI
    from lit_airlora.policy.adapter_state import module_shapes
    from lit_airlora.policy.airllm_env import AirLLMEnvironment
    from lit_airlora.policy.observation import Observation

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
    wall = time.perf_counter() - start
    env = AirLLMEnvironment(**prepared_env(config))
    shapes = module_shapes(cli.model.lora_layers)
    costs = []
    for k, timing in enumerate(timer.rounds):
        ranks = {n: h[k] for n, h in rank_cb.rank_history.items()}
        obs = Observation(
            round_idx=k,
            ranks=ranks,
            max_rank=cli.model.max_rank,
            shapes=shapes,
            snr_db=torch.tensor([float(snr_db)], dtype=torch.float64),
        )
        costs.append(0.0 if timing["skipped"] else env.cost(ranks, obs))
    history = cli.model.perplexity_history
    return {
        "method": method,
        "snr_db": snr_db,
        "final_val_loss": math.log(history[-1]),
        "start_val_loss": math.log(history[0]),
        "cumulative_cost": sum(costs),
        "costs": costs,
        "over_budget_rounds": sum(c > 1.0 for c in costs),
        "skipped_rounds": int(sum(r["skipped"] for r in timer.rounds)),
        "mean_rank": sum(sum(h) / len(h) for h in rank_cb.rank_history.values())
        / len(rank_cb.rank_history),
        "agent_fraction": sum(r["agent_s"] for r in timer.rounds)
        / sum(r["wall_s"] for r in timer.rounds),
        "rounds": timer.rounds,
        "wall_s": wall,
    }


def prepared_env(config: dict) -> dict:
    """The shared cost model's arguments (every AirLLM config prices with the same file)."""
    text = (runner.CONFIGS / "airllm" / "environment.yaml").read_text()
    return {
        k: (tuple(v) if isinstance(v, list) else v)
        for k, v in yaml.safe_load(text)["init_args"].items()
    }


def table(results: list[dict], snrs: list[float]) -> str:
    lines = [
        "| method | " + " | ".join(f"{s:g} dB: loss / cost" for s in snrs) + " |",
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
            cells.append(f"{r['final_val_loss']:.3f} / {r['cumulative_cost']:.2f}{marks}")
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
        left.plot(x, [r["final_val_loss"] for r in rows], style, label=method)
        right.plot(x, [r["cumulative_cost"] for r in rows], style, label=method)
    left.set(xlabel="SNR (dB)", ylabel="held-out loss after the run", xticks=snrs)
    right.set(xlabel="SNR (dB)", ylabel="cumulative normalised cost", xticks=snrs, yscale="log")
    right.axhline(1.0, color="grey", lw=0.5)
    left.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snrs", type=float, nargs="+", default=[-5.0, 0.0, 5.0, 10.0, 15.0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--episode-length", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=128, help="DDIM replay warm-up")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-samples", type=int, default=400)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    # One intra-op thread: on a shared, oversubscribed CPU two threads made each small matmul
    # about 20x slower (measured: 8-token rounds of 230-290 s with 2 threads, 8-14 s with 1).
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    json_path = args.out.with_suffix(".json")
    results = (
        json.loads(json_path.read_text())["results"] if args.resume and json_path.exists() else []
    )
    for snr in args.snrs:
        for method in args.methods:
            if any(r["method"] == method and r["snr_db"] == snr for r in results):
                continue
            results.append(run_one(args, method, snr))
            json_path.write_text(
                json.dumps(
                    {"args": vars(args) | {"out": str(args.out)}, "results": results}, indent=1
                )
            )
            print(
                f"{method:22s} {snr:5g} dB  loss {results[-1]['final_val_loss']:.3f}  "
                f"cost {results[-1]['cumulative_cost']:.2f}  {results[-1]['wall_s']:.0f} s",
                flush=True,
            )
    args.out.with_suffix(".md").write_text(table(results, args.snrs) + "\n")
    figure(results, args.snrs, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
