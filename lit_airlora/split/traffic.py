"""The split-learning traffic ledger: activation and gradient bits per hop, and round latency."""

from __future__ import annotations

import torch

from lit_airlora.federated.collectives import gather_objects, reduce_sum
from lit_airlora.split.step import StreamStats

#: What one transfer record holds, in this order.
FIELDS = ("bits", "symbols", "airtime_s", "energy_j")


class SplitTraffic:
    """Sums what crossed each hop this round (over streams, steps and DDP ranks).

    Keys are ``"<hop>/<activation|gradient>"`` (e.g. ``"user_edge/activation"``: the user's
    activations to the edge; ``"user_edge/gradient"``: their gradients back to the user). The
    latency model adds, per stream, every step's measured compute per tier and every transfer's
    airtime (``bits / rate`` or the link's own airtime); the streams run in parallel, so the
    round time is the max over streams.

    Args:
        keys: The transfer keys of the split (two per hop).
    """

    def __init__(self, keys: list[str]) -> None:
        self.keys = list(keys)
        self.total_bits = dict.fromkeys(self.keys, 0.0)
        self.start_round()

    def start_round(self) -> None:
        self.sums = torch.zeros(len(self.keys), len(FIELDS), dtype=torch.float64)
        self.stream_latency_s: dict[int, float] = {}
        self.compute_s: dict[str, float] = {}

    def observe(self, client_id: int, stats: StreamStats) -> None:
        """Add one stream's step."""
        for row, key in enumerate(self.keys):
            record = stats.traffic[key]
            self.sums[row] += torch.tensor([record[f] for f in FIELDS], dtype=torch.float64)
        latency = self.stream_latency_s.get(client_id, 0.0) + stats.latency_s()
        self.stream_latency_s[client_id] = latency
        for tier, seconds in stats.compute_s.items():
            self.compute_s[tier] = self.compute_s.get(tier, 0.0) + seconds

    def finish_round(self) -> dict[str, float]:
        """Round metrics over all ranks: ``comm/<hop>/<kind>_bits`` (and symbols, airtime, the
        sending tier's energy),
        cumulative bits, per-tier compute and the round time ``comm/round_latency_s``."""
        sums = reduce_sum({"x": self.sums})["x"]
        metrics: dict[str, float] = {}
        for row, key in enumerate(self.keys):
            bits, symbols, airtime, energy = sums[row].tolist()
            self.total_bits[key] += bits
            metrics[f"comm/{key}_bits"] = bits
            metrics[f"comm/{key}_bits_cumulative"] = self.total_bits[key]
            metrics[f"comm/{key}_symbols"] = symbols
            metrics[f"comm/{key}_airtime_s"] = airtime
            metrics[f"comm/{key}_energy_j"] = energy
        latencies = [v for part in gather_objects(self.stream_latency_s) for v in part.values()]
        metrics["comm/round_latency_s"] = max(latencies, default=0.0)
        for tier, seconds in self.compute_s.items():
            metrics[f"time/{tier}_compute_s"] = seconds
        return metrics

    def state_dict(self) -> dict:
        return {"total_bits": dict(self.total_bits)}

    def load_state_dict(self, state: dict) -> None:
        self.total_bits = {k: float(v) for k, v in state["total_bits"].items()}
