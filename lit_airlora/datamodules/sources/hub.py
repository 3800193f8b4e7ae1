"""Text from a ``datasets`` dataset: a hub name or a local folder of data files."""

from __future__ import annotations

from pathlib import Path

from lit_airlora.datamodules.sources.base import Record, TextSource, make_record, require_columns
from lit_airlora.errors import ConfigError


def looks_local(path: str) -> bool:
    """A path rather than a hub name: absolute, relative with ./ or ../, ~, or deeper than a/b."""
    return path.startswith(("/", "./", "../", "~")) or path.count("/") > 1


class HubDataset(TextSource):
    """Records from ``datasets.load_dataset(path, name, split=split)``.

    The same call reads a dataset from the Hugging Face hub (by name, when the machine is
    online or the dataset is cached) and a local folder of ``.jsonl`` / ``.json`` / ``.csv`` /
    ``.parquet`` / ``.txt`` files (the folder's extension picks the builder). Every column of a
    row is kept, so any of them can serve as a natural group key; the text column is copied to
    ``"text"`` and the label column, when given, to ``"label"`` (with the class name under
    ``"category"`` when the column is a ``ClassLabel``).

    Args:
        path: Hub dataset name or local folder of data files.
        split: Split to read (a local folder of plain files has only ``"train"``).
        text_column: Column holding the text.
        label_column: Column holding a class label (for Dirichlet partitions), or ``None``.
        name: Dataset configuration name, or ``None``.
        cache_dir: Where ``datasets`` caches the prepared data (``None``: its default).
    """

    def __init__(
        self,
        path: str,
        split: str = "train",
        text_column: str = "text",
        label_column: str | None = None,
        name: str | None = None,
        cache_dir: str | None = None,
    ):
        self.path = path
        self.split = split
        self.text_column = text_column
        self.label_column = label_column
        self.name = name
        self.cache_dir = cache_dir

    def load(self) -> list[Record]:
        """Load the split and turn its rows into records."""
        import datasets  # imported here: `datasets` costs ~1 s and only this source needs it

        if looks_local(self.path) and not Path(self.path).expanduser().exists():
            raise ConfigError(
                f"`path` ({self.path!r}) is not an existing folder: give a local folder of data "
                "files or a hub dataset name 'org/name'."
            )
        try:
            data = datasets.load_dataset(
                self.path, self.name, split=self.split, cache_dir=self.cache_dir
            )
        except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as err:
            raise ConfigError(
                f"`path` ({self.path!r}): no dataset found there ({type(err).__name__}); give a "
                "folder of .jsonl/.json/.csv/.parquet/.txt files or a reachable hub name."
            ) from err
        wanted = {"text_column": self.text_column, "label_column": self.label_column}
        require_columns(data.column_names, wanted, f"dataset {self.path!r}")
        records = [make_record(row, self.text_column, self.label_column) for row in data]
        names = getattr(data.features.get(self.label_column), "names", None)
        if names:  # a ClassLabel column: keep the class names for the logs
            for record in records:
                record.setdefault("category", names[record["label"]])
        return records
