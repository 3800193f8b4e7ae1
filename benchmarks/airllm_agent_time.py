"""Time of AirLLM's agent (decision + update) against the round it steers.

The real workload: SmolLM2-135M remote fine-tuning on BBC News classification, as
``configs/quickstart.yaml + configs/airllm/remote.yaml + configs/airllm_hierarchical.yaml``
build it (one edge device, one local step of ``--batch-size`` x ``--seq-len`` tokens per
round, 210 SVD-form adapters plus the head), with the hierarchical PPO + DDIM policy at the
spec's sizes (PPO MLP 256, coarse action 16, denoiser width 512 with 2 residual blocks, 50 DDIM
steps with guidance 1.5, 4 PPO epochs, 4 refiner updates per 15-round episode). Per-round
validation is off, so the round is the training step, the upload stages and the ledger: the
denominator is as small as it gets.

Measured in one fit of ``--rounds`` rounds:

* agent time per round: the policy's ``act`` (state, PPO sample, 50-step DDIM refinement,
  ranks and their price; at each episode boundary also the PPO then DDIM update) and its
  ``update`` (reward and rollout/replay storage);
* the rank-policy callback's total (also the observation it builds and its end-of-round
  spectra), for a fuller picture;
* the round's wall time (train epoch start to end).

The first round's decision builds the networks and imports torchrl and diffusers: it is shown
apart and left out of the steady-state ratio (not of the amortised one). ``--warmup`` (default
15, one episode) lowers the refiner's replay warm-up from the spec's 128 transitions so that its
update runs inside the benchmark. Target: agent time under 5% of the round.

    .venv/bin/python benchmarks/airllm_agent_time.py [--rounds 31] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [
    REPO / "configs" / "quickstart.yaml",
    REPO / "configs" / "airllm" / "remote.yaml",
    REPO / "configs" / "airllm_hierarchical.yaml",
]
TARGET = 0.05


def count(minimum: int):
    """argparse type: an integer >= ``minimum``, with the house message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"({text!r}) must be an integer >= {minimum}.")
        return value

    return parse


class Stopwatch:
    """Wraps methods of an object in place and sums their wall time per round."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}

    def wrap(self, owner, name: str, key: str) -> None:
        method = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.current[key] = self.current.get(key, 0.0) + elapsed

        setattr(owner, name, timed)


class RoundClock(L.Callback):
    """Wall time of every round with the stopwatch's sums for it."""

    def __init__(self, stopwatch: Stopwatch, policy) -> None:
        self.stopwatch, self.policy, self.rounds = stopwatch, policy, []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.stopwatch.current = {}
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        wall = time.perf_counter() - self.start
        metrics = self.policy.metrics()
        self.rounds.append(
            {
                "round_s": wall,
                **self.stopwatch.current,
                "update_s": metrics.get("update_time_s", 0.0) if self._learned() else 0.0,
                "mean_rank": float(trainer.callback_metrics.get("policy/mean_rank", 0.0)),
            }
        )

    def _learned(self) -> bool:
        steps = self.policy.steps  # act() learns when the previous round closed an episode
        return steps > 1 and (steps - 1) % self.policy.episode_length == 0


def build(args):
    """The CLI of the hierarchical config with the benchmark's scale (not run)."""
    from lit_airlora.cli import TRAINER_DEFAULTS, AirLoRACLI, compose_config

    root = Path(tempfile.mkdtemp(prefix="airllm_agent_time_"))
    config = compose_config(*CONFIGS)
    config["trainer"].update(
        max_epochs=args.rounds,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )
    config["model"]["init_args"]["export_dir"] = str(root / "adapter")
    config["data"]["init_args"].update(seq_len=args.seq_len, batch_size=args.batch_size)
    rank_policy = config["trainer"]["callbacks"][0]["init_args"]
    rank_policy["heatmap_every_n_rounds"] = 0
    rank_policy["policy"]["init_args"]["ddim"]["warmup"] = args.warmup
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return AirLoRACLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        trainer_defaults=TRAINER_DEFAULTS,
        save_config_callback=None,
        args=["--config", str(path)],
    )


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def measure(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    cli = build(args)
    callback = cli.trainer.callbacks[0]
    stopwatch = Stopwatch()
    stopwatch.wrap(callback.policy, "act", "act_s")
    stopwatch.wrap(callback.policy, "update", "record_s")
    stopwatch.wrap(callback, "_start_round", "callback_start_s")
    stopwatch.wrap(callback, "_end_round", "callback_end_s")
    clock = RoundClock(stopwatch, callback.policy)
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    rows = clock.rounds
    for row in rows:
        row["agent_s"] = row.get("act_s", 0.0) + row.get("record_s", 0.0)
        row["callback_s"] = row.get("callback_start_s", 0.0) + row.get("callback_end_s", 0.0)
        row["decision_s"] = row.get("act_s", 0.0) - row["update_s"]
    steady = rows[1:]
    updates = [r["update_s"] for r in steady if r["update_s"] > 0]
    return {
        "config": [str(p.relative_to(REPO)) for p in CONFIGS],
        "args": vars(args) | {"json": str(args.json) if args.json else None},
        "adapters": len(cli.model.lora_layers),
        "first_decision_s": rows[0].get("act_s", 0.0),
        "round_s": spread([r["round_s"] for r in steady]),
        "decision_s": spread([r["decision_s"] for r in steady]),
        "episode_update_s": spread(updates) if updates else None,
        "agent_ratio": spread([r["agent_s"] / r["round_s"] for r in steady]),
        "callback_ratio": spread([r["callback_s"] / r["round_s"] for r in steady]),
        "agent_ratio_amortised_steady": sum(r["agent_s"] for r in steady)
        / sum(r["round_s"] for r in steady),
        "agent_ratio_amortised_all": sum(r["agent_s"] for r in rows)
        / sum(r["round_s"] for r in rows),
        "rounds": rows,
    }


def report(result: dict) -> str:
    def row(name: str, s: dict | None, scale: float = 1.0, unit: str = "s") -> str:
        if s is None:
            return f"| {name} | - | - | - | 0 |"
        return (
            f"| {name} | {s['median'] * scale:.4g} {unit} | {s['min'] * scale:.4g} | "
            f"{s['max'] * scale:.4g} | {s['n']} |"
        )

    lines = [
        "| per round (rounds 2..N) | median | min | max | n |",
        "|---|---|---|---|---|",
        row("round wall time", result["round_s"]),
        row("agent decision (state, PPO, 50 DDIM steps, price)", result["decision_s"]),
        row("agent episode update (PPO then DDIM)", result["episode_update_s"]),
        row("agent / round", result["agent_ratio"], 100, "%"),
        row("rank-policy callback / round", result["callback_ratio"], 100, "%"),
        "",
        f"agent / round, amortised over rounds 2..N: "
        f"{100 * result['agent_ratio_amortised_steady']:.2f}% (target < {100 * TARGET:.0f}%); "
        f"over all rounds, with the first decision ({result['first_decision_s']:.2f} s, builds "
        f"the networks): {100 * result['agent_ratio_amortised_all']:.2f}%",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=count(2), default=31, help="31: two episode updates")
    parser.add_argument("--seq-len", type=count(1), default=64)
    parser.add_argument("--batch-size", type=count(1), default=8)
    parser.add_argument("--warmup", type=count(1), default=15, help="refiner replay warm-up")
    parser.add_argument("--threads", type=count(1), default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = measure(args)
    print(report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
