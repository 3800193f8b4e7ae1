"""Time the digital uplink's transmit stage alone on SmolLM2-shaped LoRA uploads (no training).

The payload mimics SmolLM2-135M with rank-8 LoRA on q_proj (576 -> 576) and v_proj (576 -> 192)
in 30 layers: 460,800 reals per client (see ``benchmarks/aircomp_transmit.py``). Each run is one
round of ``DigitalUplink.on_upload_transmit`` with the abstraction link of
``configs/digital_fedavg.yaml`` (8-bit uniform quantiser, path-loss SNR, Rayleigh block fading,
link adaptation, one HARQ retransmission): quantisation, block errors, dequantisation, received
uploads and metrics. Prints seconds per round (median of ``--repeats`` after a warm-up) and the
ideal FedAvg aggregation time for scale; issue 3 asks for well under 1 s per round.

    python benchmarks/digital_transmit.py [--clients 4] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

# Run as a script: its folder is on sys.path.
from aircomp_transmit import random_round, smollm2_template
from timing import spread, write_json

from lit_airlora.callbacks.digital_link import DigitalUplink
from lit_airlora.channel.abstraction import AbstractionLink
from lit_airlora.channel.fading import RayleighBlock
from lit_airlora.channel.large_scale import PathLossSNR
from lit_airlora.channel.quantize import StochasticQuantizer, UniformQuantizer

MODULE = type("Module", (), {"device": torch.device("cpu")})()


def config_uplink(quantizer=None) -> DigitalUplink:
    """The uplink of ``configs/digital_fedavg.yaml``."""
    link = AbstractionLink(
        mcs_index=None, mcs_table=1, target_bler=0.1, bandwidth_hz=5e6,
        subcarrier_spacing_hz=30e3, max_retransmissions=1, tx_power_w=0.2,
    )  # fmt: skip
    large_scale = PathLossSNR(50.0, 500.0, 23.0, 5e6, noise_figure_db=7.0)
    return DigitalUplink(
        link, quantizer or UniformQuantizer(8), large_scale, RayleighBlock(), seed=0
    )


def time_transmit(callback: DigitalUplink, ctx_factory, repeats: int) -> dict:
    """Median seconds per round of the transmit stage, after one warm-up round."""
    callback.link.setup("cpu")
    callback.on_upload_transmit(None, MODULE, ctx_factory())
    seconds = []
    for _ in range(repeats):
        ctx = ctx_factory()
        start = time.perf_counter()
        callback.on_upload_transmit(None, MODULE, ctx)
        seconds.append(time.perf_counter() - start)
    return {
        "transmit": spread(seconds),
        "bits_offered": ctx.metrics["comm/bits_offered"],
        "bler": ctx.metrics["channel/bler"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.num_threads)
    template = smollm2_template()
    base = random_round(template, args.clients)

    def fresh():
        return _copy(base)

    values = sum(t.numel() for t in template.values())
    print(f"payload: {values} reals per client, {args.clients} clients")  # script output
    start = time.perf_counter()
    base.aggregator.aggregate(base.uploads, base.global_adapter)
    ideal_s = time.perf_counter() - start
    print(f"ideal FedIT aggregate: {ideal_s:.3f} s")  # script output
    print("| quantiser | transmit s, median (min-max) | bits offered | BLER |")
    print("|---|---|---|---|")
    results = {"ideal_aggregate_s": ideal_s}
    for name, quantizer in (("uniform8", UniformQuantizer(8)), ("stochastic8", None)):
        quantizer = quantizer or StochasticQuantizer(8)
        result = results[name] = time_transmit(config_uplink(quantizer), fresh, args.repeats)
        t = result["transmit"]
        print(
            f"| {name} | {t['median_s']:.3f} ({t['min_s']:.3f}-{t['max_s']:.3f}) "
            f"| {result['bits_offered']:.0f} | {result['bler']:.3f} |"
        )  # script output
    write_json(args.json, args, results)


def _copy(ctx):
    """A fresh context over the same uploads (the stage replaces ``ctx.uploads``)."""
    from dataclasses import replace

    return replace(ctx, uploads=list(ctx.uploads), metrics={}, aggregate=None)


if __name__ == "__main__":
    main()
