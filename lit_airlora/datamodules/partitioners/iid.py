"""IID partition: a uniform random split of the records."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lit_airlora.datamodules.partitioners.base import Partitioner, check_num_clients
from lit_airlora.datamodules.sources.base import Record


class IID(Partitioner):
    """Shuffle the records and deal them into ``num_clients`` parts whose sizes differ by at
    most one: the homogeneous baseline of federated learning (McMahan et al., 2017,
    "Communication-Efficient Learning of Deep Networks from Decentralized Data").

    Args:
        num_clients: Number of clients.
    """

    def __init__(self, num_clients: int):
        check_num_clients(num_clients)
        self.num_clients = num_clients

    def partition(self, records: Sequence[Record], generator: torch.Generator) -> list[list[int]]:
        """Equal-size random parts (record indices sorted within each part)."""
        order = torch.randperm(len(records), generator=generator)
        parts = torch.tensor_split(order, self.num_clients)
        return [sorted(part.tolist()) for part in parts]
