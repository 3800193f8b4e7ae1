"""Natural partition: one client per value of a group key (speaking role, author, file)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lit_airlora.datamodules.partitioners.base import (
    Partitioner,
    check_num_clients,
    column_values,
)
from lit_airlora.datamodules.sources.base import Record


class Natural(Partitioner):
    """One client per distinct value of ``column``, keeping the ``num_clients`` largest groups
    (by number of records; ties broken by name), as LEAF does with Shakespeare's speaking
    roles (Caldas et al., 2018, "LEAF: A Benchmark for Federated Settings"). Client 0 is the
    largest group. Records of the groups left out are not used (nor tokenised).

    Args:
        column: Record field whose values define the clients (``"role"``, ``"play"``, ``"file"``).
        num_clients: Number of largest groups kept, or ``None`` for every group.
    """

    def __init__(self, column: str = "role", num_clients: int | None = None):
        if num_clients is not None:
            check_num_clients(num_clients)
        self.column = column
        self.num_clients = num_clients

    def partition(self, records: Sequence[Record], generator: torch.Generator) -> list[list[int]]:
        """Record indices of the kept groups, largest group first (the generator is unused)."""
        return [indices for _, indices in self._groups(records)]

    def client_names(self, records: Sequence[Record], clients: list[list[int]]) -> list[str]:
        """The group value of each client."""
        return [str(records[indices[0]][self.column]) if indices else "" for indices in clients]

    def _groups(self, records: Sequence[Record]) -> list[tuple[str, list[int]]]:
        groups: dict[str, list[int]] = {}
        for index, value in enumerate(column_values(records, self.column)):
            groups.setdefault(str(value), []).append(index)
        ranked = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
        if self.num_clients is None:
            return ranked
        if self.num_clients > len(ranked):
            raise ValueError(
                f"`num_clients` ({self.num_clients}) exceeds the {len(ranked)} distinct values "
                f"of `column` ({self.column!r}); use at most {len(ranked)} or `None` for all."
            )
        return ranked[: self.num_clients]
