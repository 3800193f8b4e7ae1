"""Information throughput of BitLevelLink against the raw Sionna chain it wraps.

Same payload, same code (5G LDPC, QPSK, rate 1/2, 1024 coded bits, 20 BP iterations), AWGN at
an SNR where no block fails (so no retransmission inflates our side):

- ``ours``: ``BitLevelLink.transmit`` (bit packing into blocks, CRC, LDPC, QAM, channel, LMMSE
  equalisation, demapping, decoding, CRC check, bookkeeping);
- ``raw``: ``LDPC5GEncoder -> Mapper -> AWGN -> Demapper -> LDPC5GDecoder`` on the same number
  of blocks, Sionna blocks called directly (no CRC).

Prints payload bits per second of both (median, min and max of ``--repeats`` interleaved runs
after a warm-up) and the time ratio ours / raw per interleaved pair (the target is <= 1.2).

    python benchmarks/bit_level_throughput.py [--payload-bits 50000] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

# Run as a script: its folder is on sys.path.
from timing import spread, write_json

from lit_airlora.channel.bit_level import BitLevelLink
from lit_airlora.channel.units import db_to_lin

SNR_DB = 10.0
BLOCK_LENGTH, CODE_RATE, BITS_PER_SYMBOL = 1024, 0.5, 2


def raw_chain(num_blocks: int, ldpc_info_bits: int):
    """A closure running Sionna's chain on ``num_blocks`` blocks of random information bits."""
    from sionna.phy.channel import AWGN
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
    from sionna.phy.mapping import Demapper, Mapper

    encoder = LDPC5GEncoder(
        ldpc_info_bits, BLOCK_LENGTH, num_bits_per_symbol=BITS_PER_SYMBOL, device="cpu"
    )
    decoder = LDPC5GDecoder(encoder, hard_out=True, num_iter=20, device="cpu")
    mapper = Mapper("qam", BITS_PER_SYMBOL, device="cpu")
    demapper = Demapper("app", "qam", BITS_PER_SYMBOL, device="cpu")
    awgn = AWGN(device="cpu")
    no = db_to_lin(torch.tensor(-SNR_DB))  # float32, as the signal
    bits = torch.randint(0, 2, (num_blocks, ldpc_info_bits)).float()

    def run() -> None:
        decoder(demapper(awgn(mapper(encoder(bits)), no), no))

    return run


def ours(link: BitLevelLink, payload_bits: int):
    """A closure sending one client's payload of ``payload_bits`` random bits."""
    bits = torch.randint(0, 2, (payload_bits,), dtype=torch.uint8)
    snr_db = torch.tensor([SNR_DB])
    fading = torch.ones(1, 1, 1, 1, dtype=torch.complex64)

    def run() -> None:
        report = link.transmit([bits], snr_db, fading, torch.Generator().manual_seed(0))
        if int(report.block_errors[0]):
            raise RuntimeError("A block failed at the benchmark SNR: raise SNR_DB.")

    return run


def interleaved_seconds(runs: dict, repeats: int) -> dict[str, list[float]]:
    """Wall times of each closure, ``repeats`` each, interleaved so load changes hit both alike."""
    for run in runs.values():
        run()  # warm-up: lazy builds
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payload-bits", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    torch.manual_seed(0)
    link = BitLevelLink(BITS_PER_SYMBOL, CODE_RATE, BLOCK_LENGTH, max_payload_bits=10**7)
    link.setup("cpu")
    num_blocks = -(-args.payload_bits // link.block_bits)
    times = interleaved_seconds(
        {
            "ours": ours(link, args.payload_bits),
            "raw": raw_chain(num_blocks, link.ldpc_info_bits),
        },
        args.repeats,
    )
    ratios = [o / r for o, r in zip(times["ours"], times["raw"], strict=True)]
    t_ours, t_raw = (statistics.median(times[k]) for k in ("ours", "raw"))
    print(f"payload: {args.payload_bits} bits in {num_blocks} blocks of {BLOCK_LENGTH} coded bits")
    print(f"ours (BitLevelLink.transmit): {args.payload_bits / t_ours / 1e6:.4f} Mbit/s (median)")
    print(f"raw Sionna chain:             {args.payload_bits / t_raw / 1e6:.4f} Mbit/s (median)")
    print(
        f"time ours / raw per pair: median {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f}; target <= 1.2)"
    )
    write_json(
        args.json,
        args,
        {
            "ours": spread(times["ours"]),
            "raw": spread(times["raw"]),
            "ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
        },
    )


if __name__ == "__main__":
    main()
