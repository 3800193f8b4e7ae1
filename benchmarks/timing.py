"""Shared by the transmit benchmarks: the spread of repeated timings and the JSON they write."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path


def spread(seconds: list[float]) -> dict[str, float]:
    """Median, min and max of repeated timings."""
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
    }


def write_json(path: Path | None, args, results: dict) -> None:
    """Write the arguments, the machine's load and ``results`` to ``path`` (when given)."""
    if path is None:
        return
    payload = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "load_average": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "results": results,
    }
    path.write_text(json.dumps(payload, indent=1))
