"""Build a cache folder once across processes: a file lock, a private scratch folder, a rename.

On a first DDP run every rank (and any other run started at the same time) asks for the same
cache. The first to take the lock builds it in a scratch folder beside the target and renames
it into place (atomic on one file system), so a reader never sees a half-written folder; the
others wait on the lock and then find the finished cache. ``filelock`` is what
huggingface_hub uses for its own downloads.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

READY_FILE = "config.json"


def build_once(target: Path, build: Callable[[Path], None], timeout_s: float = 3600.0) -> bool:
    """Run ``build(scratch)`` and rename ``scratch`` to ``target`` unless ``target`` is ready.

    Returns whether this process built it. ``target`` counts as ready once it holds
    ``config.json`` (written last by ``save_pretrained``'s folder, and renamed in with it).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=timeout_s):
        if (target / READY_FILE).exists():
            return False
        scratch = target.with_name(f"{target.name}.partial-{os.getpid()}")
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            build(scratch)
            if target.exists():  # an incomplete folder left by an older version: replace it
                shutil.rmtree(target)
            os.replace(scratch, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return True
