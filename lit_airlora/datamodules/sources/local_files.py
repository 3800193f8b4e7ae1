"""Text from local files: plain text, JSON, JSON lines and CSV."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from lit_airlora.datamodules.sources.base import Record, TextSource, make_record, require_columns
from lit_airlora.errors import ConfigError

SUFFIXES = (".txt", ".json", ".jsonl", ".csv")


class LocalFiles(TextSource):
    """Records read from local files, in the order given (a folder: its files, sorted).

    Formats, by extension:

    - ``.txt``: one record per paragraph, paragraphs being blocks of non-empty lines
      separated by one or more blank lines (line breaks inside a paragraph are kept).
      Plain text has no columns, so ``text_column`` and ``label_column`` do not apply.
    - ``.json``: a list of objects (rows) or of strings (texts).
    - ``.jsonl``: one object per line.
    - ``.csv``: a header line, then one row per line (values are strings).

    Every record also holds ``"file"`` (its path), a natural group key: ``Natural(column=
    "file")`` makes one client per file.

    Args:
        paths: Files or folders to read.
        text_column: Field holding the text in JSON / JSON-lines / CSV rows.
        label_column: Field holding a class label in those rows, or ``None``.
    """

    def __init__(
        self, paths: list[str], text_column: str = "text", label_column: str | None = None
    ):
        if isinstance(paths, str):
            raise TypeError(f"`paths` ({paths!r}) must be a list of paths, not a string.")
        self.paths = list(paths)
        self.text_column = text_column
        self.label_column = label_column

    def load(self) -> list[Record]:
        """Read every file and return its records."""
        records: list[Record] = []
        for path in self._files():
            found = self._read(path)
            if not found:
                raise ConfigError(
                    f"`paths`: {str(path)!r} holds no records (empty file); remove it from "
                    "`paths` or give it text."
                )
            records.extend(found)
        return records

    def fingerprint(self) -> str:
        """Arguments and each file's size and modification time (the set-up cache's key)."""
        files = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in self._files()]
        fields = [self.paths, self.text_column, self.label_column, files]
        return f"LocalFiles:{json.dumps(fields)}"

    def _files(self) -> list[Path]:
        files: list[Path] = []
        for raw in self.paths:
            path = Path(raw)
            if not path.exists():
                raise ConfigError(f"`paths` entry {raw!r} does not exist; fix the path.")
            if path.is_dir():
                found = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES)
                if not found:
                    raise ConfigError(
                        f"`paths` entry {raw!r} is a folder without {', '.join(SUFFIXES)} files."
                    )
                files.extend(found)
            elif path.suffix in SUFFIXES:
                files.append(path)
            else:
                raise ConfigError(
                    f"`paths` entry {raw!r} has an unsupported extension; use one of {SUFFIXES}."
                )
        return files

    def _read(self, path: Path) -> list[Record]:
        if path.suffix == ".txt":
            rows = [{"text": p} for p in read_paragraphs(path)]
            return [{**row, "file": str(path)} for row in rows]
        rows = {".json": _read_json, ".jsonl": _read_jsonl, ".csv": _read_csv}[path.suffix](path)
        rows = [row if isinstance(row, dict) else {self.text_column: row} for row in rows]
        wanted = {"text_column": self.text_column, "label_column": self.label_column}
        for row in rows:
            require_columns(row, wanted, f"a row of {str(path)!r}")
        return [
            {**make_record(row, self.text_column, self.label_column), "file": str(path)}
            for row in rows
        ]


def read_paragraphs(path: Path) -> list[str]:
    """Non-empty paragraphs of a text file (blank lines separate paragraphs)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    blocks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    return [block.strip() for block in blocks if block.strip()]


def _read_json(path: Path) -> list[Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{str(path)!r} must hold a JSON list of objects or strings.")
    return data


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))
