"""The communication ledger: uplink bits per client, per round and in total."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lit_airlora.federated.collectives import reduce_sum
from lit_airlora.federated.upload import Upload


class CommLedger:
    """Counts what crossed the uplink, summed over DDP ranks, and keeps the running total."""

    def __init__(self) -> None:
        self.total_bits = 0.0
        self.rounds = 0

    def record(self, uploads: Sequence[Upload], reduce=reduce_sum) -> dict[str, float]:
        """Metrics of one round from the uploads as sent (``payload_bits`` after encoding).

        ``reduce`` sums over DDP ranks; a remote link, whose one upload every rank holds,
        passes ``identity_reduce``.
        """
        local = torch.tensor(
            [sum(u.payload_bits() for u in uploads), float(len(uploads))], dtype=torch.float64
        )
        bits, clients = reduce({"x": local})["x"].tolist()
        self.total_bits += bits
        self.rounds += 1
        return {
            "comm/uplink_bits": bits,
            "comm/uplink_bits_per_client": bits / max(clients, 1.0),
            "comm/uplink_bits_cumulative": self.total_bits,
            "round/clients": clients,
        }

    def state_dict(self) -> dict[str, float]:
        return {"total_bits": self.total_bits, "rounds": self.rounds}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.total_bits = float(state["total_bits"])
        self.rounds = int(state["rounds"])
