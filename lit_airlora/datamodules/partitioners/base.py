"""The partitioner protocol: how records are shared out among clients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lit_airlora.datamodules.sources.base import Record


class Partitioner:
    """Splits a corpus into clients, chosen in YAML by ``class_path``.

    ``partition`` returns, for each client, the indices of its records (sorted). It draws
    randomness only from the generator it is given, so a partition is a function of the
    records and the datamodule's seed.
    """

    #: Number of clients this partitioner makes, when known before seeing the data.
    num_clients: int | None = None

    def partition(self, records: Sequence[Record], generator: torch.Generator) -> list[list[int]]:
        """Record indices of each client."""
        raise NotImplementedError

    def client_names(self, records: Sequence[Record], clients: list[list[int]]) -> list[str]:
        """A readable name per client, for logs."""
        return [f"client_{i}" for i in range(len(clients))]


def check_num_clients(num_clients: int) -> None:
    """Raise unless ``num_clients`` is a positive int."""
    if isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 1:
        raise ValueError(f"`num_clients` ({num_clients!r}) must be an int >= 1.")


def column_values(records: Sequence[Record], column: str) -> list[Any]:
    """The value of ``column`` in every record; raise, listing the columns, if one lacks it."""
    for i, record in enumerate(records):
        if column not in record:
            raise ValueError(
                f"`column` ({column!r}) is missing from record {i}; "
                f"its columns are {sorted(record)}."
            )
    return [record[column] for record in records]


def check_min_samples(clients: list[list[int]], min_samples: int) -> None:
    """Raise if a client holds fewer than ``min_samples`` records, saying what to change."""
    for client_id, indices in enumerate(clients):
        if len(indices) < min_samples:
            raise ValueError(
                f"Client {client_id} holds {len(indices)} record(s) after partitioning, fewer "
                f"than `min_samples_per_client` ({min_samples}). Lower `min_samples_per_client`, "
                "use fewer clients (`num_clients`), or (Dirichlet) raise `alpha`."
            )
