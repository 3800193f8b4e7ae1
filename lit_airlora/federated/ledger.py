"""The communication ledger: uplink bits per client, per round and in total, and the
server's reply (the adapter download) per round and in total."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lit_airlora.federated.collectives import reduce_sum
from lit_airlora.federated.upload import Upload

if TYPE_CHECKING:
    from lit_airlora.federated.aggregators import Aggregator

#: Bits of one value the server sends back (float32, as the split module's adapter download).
DOWNLOAD_BITS_PER_VALUE = 32


class CommLedger:
    """Counts what crossed the uplink (and, given the aggregator, the download of the server's
    reply), summed over DDP ranks, and keeps the running totals."""

    def __init__(self) -> None:
        self.total_bits = 0.0
        self.total_download_bits = 0.0
        self.rounds = 0

    def record(
        self,
        uploads: Sequence[Upload],
        reduce=reduce_sum,
        aggregator: Aggregator | None = None,
        template: Mapping[str, Tensor] | None = None,
    ) -> dict[str, float]:
        """Metrics of one round from the uploads as sent (``payload_bits`` after encoding).

        ``reduce`` sums over DDP ranks; a remote link, whose one upload every rank holds,
        passes ``identity_reduce``. With ``aggregator`` and the round's ``template`` (the global
        adapter), also the download: every client of the round receives
        ``aggregator.broadcast_values(template)`` plus ``stacked_values`` of every upload
        (FLoRA's stacked modules grow with the clients) float32 values, logged as
        ``comm/adapter_download_bits`` (all clients of the round, as the split module counts
        it), ``..._per_client`` and ``..._cumulative``.
        """
        stacked = 0.0
        if aggregator is not None:
            stacked = float(sum(aggregator.stacked_values(u, template) for u in uploads))
        local = torch.tensor(
            [sum(u.payload_bits() for u in uploads), float(len(uploads)), stacked],
            dtype=torch.float64,
        )
        bits, clients, stacked = reduce({"x": local})["x"].tolist()
        self.total_bits += bits
        self.rounds += 1
        metrics = {
            "comm/uplink_bits": bits,
            "comm/uplink_bits_per_client": bits / max(clients, 1.0),
            "comm/uplink_bits_cumulative": self.total_bits,
            "round/clients": clients,
        }
        if aggregator is not None:
            metrics.update(self._download(aggregator.broadcast_values(template) + stacked, clients))
        return metrics

    def _download(self, values: float, clients: float) -> dict[str, float]:
        per_client = values * DOWNLOAD_BITS_PER_VALUE if clients else 0.0
        self.total_download_bits += per_client * clients
        return {
            "comm/adapter_download_bits": per_client * clients,
            "comm/adapter_download_bits_per_client": per_client,
            "comm/adapter_download_bits_cumulative": self.total_download_bits,
        }

    def state_dict(self) -> dict[str, float]:
        return {
            "total_bits": self.total_bits,
            "total_download_bits": self.total_download_bits,
            "rounds": self.rounds,
        }

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.total_bits = float(state["total_bits"])
        # checkpoints written before the download was counted have none
        self.total_download_bits = float(state.get("total_download_bits", 0.0))
        self.rounds = int(state["rounds"])
