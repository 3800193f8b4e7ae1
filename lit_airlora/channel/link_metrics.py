"""Communication metrics of digital links: per-client counts of a report, round totals."""

from __future__ import annotations

from torch import Tensor

from lit_airlora.channel.costs import combined_airtime_s
from lit_airlora.channel.link import LinkReport

#: Per-client counts (see :func:`client_counts`), summed over clients and DDP ranks in order.
LINK_COUNTS = (
    "bits_offered",
    "bits_delivered",
    "block_transmissions",
    "block_errors",
    "blocks_dropped",
    "retransmissions",
    "energy_j",
    "channel_bit_errors",
    "channel_bits",
    "snr_db",
    "clients",
)


def client_counts(report: LinkReport, k: int, snr_db: float) -> dict[str, float]:
    """Client ``k``'s entries of ``report`` (keys :data:`LINK_COUNTS`), with its mean SNR."""
    values = {
        "bits_offered": report.bits_offered,
        "bits_delivered": report.bits_delivered,
        "block_transmissions": report.block_transmissions,
        "block_errors": report.block_errors,
        "blocks_dropped": report.blocks_dropped(),
        "retransmissions": report.retransmissions,
        "energy_j": report.energy_j,
        "channel_bit_errors": report.channel_bit_errors,
        "channel_bits": report.channel_bits,
    }
    counts = {key: float(v[k]) for key, v in values.items()}
    return {**counts, "snr_db": snr_db, "clients": 1.0}


def round_link_metrics(
    total: dict[str, float], airtime_s: Tensor, multiple_access: str, corrupts_bits: bool
) -> dict[str, float]:
    """``comm/*`` and ``channel/*`` metrics of a round from summed counts.

    Args:
        total: :data:`LINK_COUNTS` summed over the round's clients.
        airtime_s: ``[K]`` per-client airtime of the round's clients.
        multiple_access: How clients share the uplink (see :func:`combined_airtime_s`).
        corrupts_bits: Whether the link simulates bits (adds the raw ``channel/ber``).
    """
    clients = max(total["clients"], 1.0)
    metrics = {
        "comm/bits_offered": total["bits_offered"],
        "comm/bits_delivered": total["bits_delivered"],
        "comm/delivered_fraction": total["bits_delivered"] / max(total["bits_offered"], 1.0),
        "comm/block_errors": total["block_errors"],
        "comm/blocks_dropped": total["blocks_dropped"],
        "comm/retransmissions": total["retransmissions"],
        "comm/airtime_s": combined_airtime_s(airtime_s, multiple_access),
        "comm/energy_j": total["energy_j"],
        "channel/bler": total["block_errors"] / max(total["block_transmissions"], 1.0),
        "channel/snr_db_mean": total["snr_db"] / clients,
    }
    if corrupts_bits:
        metrics["channel/ber"] = total["channel_bit_errors"] / max(total["channel_bits"], 1.0)
    return metrics
