"""The text source protocol: where a federated text corpus comes from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: A record: at least ``"text"``; optionally a label and natural group keys.
Record = dict[str, Any]


class TextSource:
    """A corpus as a list of records, chosen in YAML by ``class_path``.

    Every record holds ``"text"`` (a string) and may hold a ``"label"`` (for Dirichlet
    partitions), a ``"category"`` (the label's name) and natural group keys (``"role"``,
    ``"play"``, ``"file"``) that a natural partition splits on. Loading happens in the
    datamodule's ``setup``, never in ``__init__``, so building a config stays cheap.
    """

    def load(self) -> list[Record]:
        """Read the corpus and return its records, in a deterministic order."""
        raise NotImplementedError


def require_columns(available: Iterable[str], wanted: Mapping[str, str | None], where: str) -> None:
    """Raise if a requested column is missing.

    Args:
        available: Column names the data has.
        wanted: Argument name -> requested column (``None`` = not requested).
        where: What holds the data, for the message (a path or dataset name).
    """
    columns = sorted(available)
    for arg, column in wanted.items():
        if column is not None and column not in columns:
            raise ValueError(
                f"`{arg}` ({column!r}) is not a column of {where}; available columns: {columns}."
            )


def make_record(row: Mapping[str, Any], text_column: str, label_column: str | None) -> Record:
    """Copy a row, putting its text under ``"text"`` and its label (if any) under ``"label"``."""
    record = dict(row)
    record["text"] = str(row[text_column])
    if label_column is not None:
        record["label"] = row[label_column]
    return record
