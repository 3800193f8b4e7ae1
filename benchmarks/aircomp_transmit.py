"""Time the over-the-air transmit stage alone on realistic LoRA payloads (no model, no training).

The payload mimics SmolLM2-135M with rank-8 LoRA on q_proj (576 -> 576) and v_proj (576 -> 192)
in 30 layers: 460,800 reals per client. ``time_transmit`` runs one round of
``OverTheAirAggregation`` (channel draws, side information, beamformers, superposition, noise,
estimate) on hand-built uploads and reports seconds per round next to the ideal FedAvg.

    python benchmarks/aircomp_transmit.py [--clients 4] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

# Run as a script: its folder is on sys.path.
from timing import spread, write_json

from lit_airlora.callbacks.over_the_air import OverTheAirAggregation
from lit_airlora.channel.beamforming import ManifoldBeamformer, MatchedFilterBeamformer
from lit_airlora.channel.fading import OFDMTDL, RayleighBlock
from lit_airlora.channel.large_scale import UniformSNR
from lit_airlora.federated.aggregators import FedIT, identity_reduce
from lit_airlora.federated.upload import RoundContext, Upload

#: (module suffix, d_in, d_out) of SmolLM2-135M's attention projections adapted by the quickstart.
SMOLLM2_TARGETS = (("self_attn.q_proj", 576, 576), ("self_attn.v_proj", 576, 192))
SMOLLM2_LAYERS = 30


def smollm2_template(rank: int = 8, num_layers: int = SMOLLM2_LAYERS) -> dict[str, torch.Tensor]:
    """Zero LoRA tensors of SmolLM2-135M: ``lora_A [r, d_in]``, ``lora_B [d_out, r]``."""
    template = {}
    for layer in range(num_layers):
        for suffix, d_in, d_out in SMOLLM2_TARGETS:
            module = f"model.layers.{layer}.{suffix}"
            template[f"{module}.lora_A"] = torch.zeros(rank, d_in)
            template[f"{module}.lora_B"] = torch.zeros(d_out, rank)
    return template


def random_round(template: dict, num_clients: int, seed: int = 0) -> RoundContext:
    """A round of ``num_clients`` random full-rank uploads with FedIT and a single process."""
    g = torch.Generator().manual_seed(seed)
    modules = sorted({n.rsplit(".", 1)[0] for n in template})
    rank = next(iter(template.values())).shape[0]
    uploads = [
        Upload(
            client_id=k,
            tensors={n: torch.randn(t.shape, generator=g) * 1e-3 for n, t in template.items()},
            ranks=dict.fromkeys(modules, rank),
            weight=float(50 + k),
        )
        for k in range(num_clients)
    ]
    aggregator = FedIT()
    return RoundContext(
        round_idx=0,
        uploads=uploads,
        global_adapter=template,
        aggregator=aggregator,
        ideal_aggregate=aggregator.aggregate(uploads, template),
        reduce=identity_reduce,
        generator_seed=seed,
        round_clients=list(range(num_clients)),
        client_weights={u.client_id: u.weight for u in uploads},
    )


def time_transmit(callback: OverTheAirAggregation, ctx: RoundContext, repeats: int = 5) -> dict:
    """Seconds per round of the over-the-air stage: median, min and max of ``repeats`` after a
    warm-up, beside the ideal FedAvg aggregate of the same uploads."""
    callback.aggregate_over_the_air(ctx)  # warm-up: lazy imports and Sionna blocks
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        _, metrics, _ = callback.aggregate_over_the_air(ctx)
        seconds.append(time.perf_counter() - start)
    ideal = []
    for _ in range(repeats):
        start = time.perf_counter()
        ctx.aggregator.aggregate(ctx.uploads, ctx.global_adapter)
        ideal.append(time.perf_counter() - start)
    return {
        "transmit": spread(seconds),
        "ideal_aggregate": spread(ideal),
        "channel_uses": metrics["comm/channel_uses"],
        "agg_nmse": metrics["channel/agg_nmse"],
    }


def default_channels() -> dict[str, OverTheAirAggregation]:
    """The three channels of the configs: SISO Rayleigh, MIMO-OFDM with two beamformers."""
    tdl = {"num_subcarriers": 64, "num_rx": 4, "num_tx": 2}
    return {
        "siso_rayleigh": OverTheAirAggregation(UniformSNR(0.0, 15.0), RayleighBlock()),
        "mimo_tdl_matched_filter": OverTheAirAggregation(
            UniformSNR(0.0, 15.0), OFDMTDL(**tdl), num_streams=2,
            beamformer=MatchedFilterBeamformer(),
        ),
        "mimo_tdl_manifold": OverTheAirAggregation(
            UniformSNR(0.0, 15.0), OFDMTDL(**tdl), num_streams=2, beamformer=ManifoldBeamformer()
        ),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.num_threads)
    template = smollm2_template()
    ctx = random_round(template, args.clients)
    values = sum(t.numel() for t in template.values())
    print(f"payload: {values} reals per client, {args.clients} clients")  # script output
    print("| channel | transmit s, median (min-max) | ideal aggregate s | transmit / ideal |")
    print("|---|---|---|---|")
    results = {}
    for name, callback in default_channels().items():
        result = results[name] = time_transmit(callback, ctx, args.repeats)
        t, ideal = result["transmit"], result["ideal_aggregate"]
        print(
            f"| {name} | {t['median_s']:.3f} ({t['min_s']:.3f}-{t['max_s']:.3f}) "
            f"| {ideal['median_s']:.4f} | {t['median_s'] / ideal['median_s']:.1f} |"
        )  # script output
    write_json(args.json, args, results)


if __name__ == "__main__":
    main()
