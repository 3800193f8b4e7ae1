"""Label-skewed partition: per-class client shares drawn from a Dirichlet distribution."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lit_airlora.datamodules.partitioners.base import (
    Partitioner,
    check_num_clients,
    column_values,
)
from lit_airlora.datamodules.sources.base import Record

#: Draws tried before giving up on ``min_size`` (the datamodule then names the short client).
MAX_DRAWS = 1000


class Dirichlet(Partitioner):
    """Non-IID label skew (Hsu et al., 2019, "Measuring the Effects of Non-Identical Data
    Distribution for Federated Visual Classification").

    For each class ``c`` the clients' shares ``p_c ~ Dir(alpha * 1_K)`` are drawn and the
    class's shuffled records are cut at the cumulative shares. Small ``alpha`` gives each
    client few classes; large ``alpha`` tends to IID. As in common implementations the whole
    draw is repeated (up to 1000 times) until every client holds at least ``min_size``
    records.

    Args:
        num_clients: Number of clients ``K``.
        alpha: Dirichlet concentration, > 0.
        column: Record field holding the class label.
        min_size: Redraw until every client holds at least this many records (0: never).
    """

    def __init__(self, num_clients: int, alpha: float, column: str = "label", min_size: int = 2):
        check_num_clients(num_clients)
        if not alpha > 0:
            raise ValueError(
                f"`alpha` ({alpha!r}) must be > 0 (small alpha = strong label skew, e.g. 0.1; "
                "large alpha = close to IID, e.g. 100)."
            )
        if min_size < 0:
            raise ValueError(f"`min_size` ({min_size!r}) must be >= 0.")
        self.num_clients = num_clients
        self.alpha = float(alpha)
        self.column = column
        self.min_size = min_size

    def partition(self, records: Sequence[Record], generator: torch.Generator) -> list[list[int]]:
        """Label-skewed parts (record indices sorted within each part)."""
        labels = column_values(records, self.column)
        # numpy's Dirichlet sampler, seeded from the torch generator: torch's has no generator=.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        for _ in range(MAX_DRAWS):
            clients = dirichlet_split(labels, self.num_clients, self.alpha, rng)
            if min(len(c) for c in clients) >= self.min_size:
                break
        return clients


def dirichlet_split(
    labels: Sequence[Any], num_clients: int, alpha: float, rng: np.random.Generator
) -> list[list[int]]:
    """One Dirichlet draw: cut each class's shuffled indices at cumulative client shares."""
    by_class: dict[Any, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    clients: list[list[int]] = [[] for _ in range(num_clients)]
    for label in sorted(by_class, key=str):
        indices = rng.permutation(by_class[label])
        shares = rng.dirichlet(np.full(num_clients, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(indices)).astype(int)
        for client, part in zip(clients, np.split(indices, cuts), strict=True):
            client.extend(int(i) for i in part)
    return [sorted(c) for c in clients]
