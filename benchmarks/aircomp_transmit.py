"""Time the over-the-air transmit stage alone on realistic LoRA payloads (no model, no training).

The payload mimics SmolLM2-135M with rank-8 LoRA on q_proj (576 -> 576) and v_proj (576 -> 192)
in 30 layers: 460,800 reals per client. ``time_transmit`` runs one round of
``OverTheAirAggregation`` (channel draws, side information, beamformers, superposition, noise,
estimate) on hand-built uploads and reports seconds per round next to the ideal FedAvg.

    python benchmarks/aircomp_transmit.py
"""

from __future__ import annotations

import time

import torch

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


def time_transmit(callback: OverTheAirAggregation, ctx: RoundContext, repeats: int = 3) -> dict:
    """Seconds per round of the over-the-air stage (best of ``repeats`` after a warm-up)."""
    callback.aggregate_over_the_air(ctx)  # warm-up: lazy imports and Sionna blocks
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        _, metrics, _ = callback.aggregate_over_the_air(ctx)
        seconds.append(time.perf_counter() - start)
    start = time.perf_counter()
    ctx.aggregator.aggregate(ctx.uploads, ctx.global_adapter)
    ideal_s = time.perf_counter() - start
    return {
        "transmit_s": min(seconds),
        "ideal_aggregate_s": ideal_s,
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


def main(num_clients: int = 4) -> None:
    torch.set_num_threads(2)
    template = smollm2_template()
    ctx = random_round(template, num_clients)
    values = sum(t.numel() for t in template.values())
    print(f"payload: {values} reals per client, {num_clients} clients")  # script output
    for name, callback in default_channels().items():
        result = time_transmit(callback, ctx)
        print(name, {k: round(v, 4) for k, v in result.items()})  # script output


if __name__ == "__main__":
    main()
