"""Class labels of a corpus: integer ids, readable names, and the checks classification needs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lit_airlora.datamodules.sources.base import Record


def encode_labels(records: Sequence[Record]) -> tuple[list[int], list[str]]:
    """Class id of every record and the name of every class.

    Integer labels (or strings of digits, as CSV files hold them) are kept as class ids, so they
    match a hub dataset's ids; their names come from the records' ``"category"`` (set by
    ``BBCNews`` and by ``HubDataset`` for ``ClassLabel`` columns) or are the ids themselves.
    Other labels (strings such as ``"positive"``) are numbered in sorted order.

    Raises:
        ValueError: A record has no label, a label is negative, or all records share one class.
    """
    raw = [_label_of(record, i) for i, record in enumerate(records)]
    if all(_is_int(v) for v in raw):
        ids = [int(v) for v in raw]
        if min(ids) < 0:
            raise ValueError(
                f"Integer labels must be >= 0 (class ids); found {min(ids)}. Map the labels to "
                "0..K-1 or give them as names."
            )
        names = _int_label_names(records, ids)
    else:
        names = sorted({str(v) for v in raw})
        index = {name: i for i, name in enumerate(names)}
        ids = [index[str(v)] for v in raw]
    if len(set(ids)) < 2:
        raise ValueError(
            f"The labels hold a single class ({names[ids[0]]!r}) over {len(ids)} records; "
            "classification needs at least two. Check `label_column` of the source."
        )
    return ids, names


def _label_of(record: Record, index: int) -> Any:
    if "label" not in record or record["label"] is None:
        raise ValueError(
            f"Sequence classification needs a label in every record, but record {index} has "
            f"none (its fields: {sorted(record)}). Set `label_column` of the source to the "
            "column holding the class (e.g. LocalFiles(label_column='label'))."
        )
    return record["label"]


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())


def _int_label_names(records: Sequence[Record], ids: list[int]) -> list[str]:
    names = [str(i) for i in range(max(ids) + 1)]
    for record, label in zip(records, ids, strict=True):
        if record.get("category") is not None:
            names[label] = str(record["category"])
    return names
