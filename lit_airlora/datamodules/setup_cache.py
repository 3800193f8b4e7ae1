"""The data set-up cache: a federation's partitioned, tokenised and packed clients, kept on disk.

Setting up the clients (load the corpus, partition it, tokenise and pack every client) costs seconds
to minutes and gives the same tensors every time the same data settings are used, so the result is
saved under ``$LIT_AIRLORA_CACHE/data/<key>.pt`` (or ``$LIT_AIRLORA_DATA_CACHE``) and later runs
load it. The key is a SHA-256 over everything the result depends on: the datamodule's class, the
source's and the partitioner's fingerprints (class and arguments; local files also by size and
modification time), the tokenizer's (its full serialised vocabulary and rules when it has them), the
packing arguments and the seed. A file lock makes concurrent runs (DDP ranks, parallel experiments)
build it once: the others wait and load it. The file holds tensors and builtins only and is read
with ``weights_only=True``; an unreadable file is rebuilt. As in ``datasets``' fingerprinting, a
change that the fingerprints cannot see (a source edited in place with the same size and mtime)
needs the cache cleared: delete the folder or pass ``setup_cache: false``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

log = logging.getLogger(__name__)

#: Environment variable naming the cache folder.
DATA_CACHE_ENV = "LIT_AIRLORA_DATA_CACHE"

#: Bumped whenever what a cache file holds changes meaning.
FORMAT_VERSION = 1


def data_cache_dir() -> Path:
    """Folder of the data set-up caches: ``$LIT_AIRLORA_DATA_CACHE``, or ``data`` under the
    model cache root (``$LIT_AIRLORA_CACHE`` or ``~/.cache/lit_airlora``)."""
    from lit_airlora.models import cache_root

    folder = os.environ.get(DATA_CACHE_ENV)
    return Path(folder).expanduser() if folder else cache_root() / "data"


def object_fingerprint(obj: Any) -> str:
    """Class path and public arguments of ``obj``, or its own ``fingerprint()`` when it has one."""
    own = getattr(obj, "fingerprint", None)
    if callable(own):
        return str(own())
    fields = {k: v for k, v in sorted(vars(obj).items()) if not k.startswith("_")}
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    return f"{kind}:{json.dumps(fields, sort_keys=True, default=str)}"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A digest of what the tokenizer does: a fast tokenizer's serialised model (vocabulary,
    merges, normaliser), otherwise its class, vocabulary size and special tokens."""
    digest = hashlib.sha256(f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}".encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(str(len(tokenizer)).encode())
    specials = getattr(tokenizer, "special_tokens_map", {})
    digest.update(json.dumps(specials, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def setup_key(parts: dict[str, Any]) -> str:
    """SHA-256 of the JSON of ``parts`` (and the format version)."""
    text = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def load_or_build(
    key: str, build: Callable[[], dict[str, Any]], folder: Path | None = None
) -> tuple[dict[str, Any], bool]:
    """The cached result for ``key``, built with ``build()`` and saved when missing.

    Returns ``(result, built)``. ``result`` must hold tensors and builtins only.
    """
    folder = data_cache_dir() if folder is None else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.pt"
    with FileLock(str(path) + ".lock"):
        cached = _read(path)
        if cached is not None:
            return cached, False
        result = build()
        scratch = path.with_name(f"{path.name}.partial-{os.getpid()}")
        torch.save(result, scratch)
        os.replace(scratch, path)  # atomic: a reader never sees half a file
    return result, True


def _read(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception as err:  # truncated or from an incompatible torch: rebuild it
        log.warning("Data set-up cache %s is unreadable (%s); rebuilding it.", path, err)
        return None
