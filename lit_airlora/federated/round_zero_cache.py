"""The round-0 metrics cache: the untrained global adapter's validation metrics, kept on disk.

Round 0 scores the global adapter before any training; with LoRA's usual initialisation (B = 0)
that is the base model itself, and the same settings give the same metrics in every run, for the
price of a full validation pass (most of a short run's start-up on a CPU). The metrics are saved
under ``<data set-up cache>/round0_metrics/<key>.json`` and later runs log them instead of
recomputing them. The key is a SHA-256 over everything the metrics depend on: the base model's
files (name, size and modification time, as the data set-up cache fingerprints local files) and
config, the parameter dtypes, every tensor the module checkpoints (adapter factors, head, anything
trained) and the active ranks, the module's class and hyperparameters (task and metric
definitions included), the validation batches themselves (every tensor, so data, batch size and
``limit_val_batches`` all count), the precision, the device type and the versions of torch,
transformers, peft, torchmetrics and lit-airlora. Files are written whole and renamed into place
by global rank zero, so a reader never sees half a file; an unreadable file is a miss.

Not seen by the key: an in-place edit of a model file that keeps its size and modification time,
and base weights changed in memory by user code before round 0. Pass
``cache_round0_metrics: false`` to the module (or delete the folder) in such cases.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import itertools
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from lit_airlora.datamodules.setup_cache import data_cache_dir
from lit_airlora.models import model_source

if TYPE_CHECKING:
    from lit_airlora.module import FederatedLoRAModule

#: Sub-folder of the data set-up cache holding the round-0 metrics.
CACHE_FOLDER = "round0_metrics"

#: Bumped whenever what a key covers or a file holds changes meaning.
FORMAT_VERSION = 1

_LIBRARIES = ("torch", "transformers", "peft", "torchmetrics", "lit-airlora")


def round_zero_cache_dir() -> Path:
    """Folder of the round-0 metrics: ``round0_metrics`` in the data set-up cache folder."""
    return data_cache_dir() / CACHE_FOLDER


def folder_fingerprint(folder: str | Path) -> list[list] | None:
    """``[name, size, mtime_ns]`` of every file in a local model folder, or ``None`` when
    ``folder`` is not a local folder (a hub id: its files cannot be fingerprinted here)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".lock"))
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def tensors_digest(tensors: Iterable[tuple[str, Tensor]]) -> str:
    """SHA-256 over each named tensor's name, dtype, shape and bytes, in the order given."""
    digest = hashlib.sha256()
    for name, tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def batches_digest(batches: Iterable[Any], num_batches: int) -> str:
    """SHA-256 over the first ``num_batches`` batches: every tensor (by key) and other value."""
    digest = hashlib.sha256()
    for index, batch in enumerate(itertools.islice(batches, num_batches)):
        items = sorted(batch.items()) if isinstance(batch, Mapping) else [("batch", batch)]
        tensors = [(f"{index}.{k}", v) for k, v in items if isinstance(v, Tensor)]
        others = [(k, repr(v)) for k, v in items if not isinstance(v, Tensor)]
        digest.update(tensors_digest(tensors).encode())
        digest.update(json.dumps(others).encode())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries whose numerics the metrics depend on."""
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def round_zero_key(parts: dict[str, Any]) -> str:
    """SHA-256 of the JSON of ``parts``, the library versions and the format version."""
    payload = {"format": FORMAT_VERSION, "versions": library_versions(), **parts}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_metrics(key: str, folder: Path | None = None) -> dict[str, float] | None:
    """The metrics cached under ``key``, or ``None`` (missing or unreadable: a miss)."""
    path = (round_zero_cache_dir() if folder is None else Path(folder)) / f"{key}.json"
    try:
        stored = json.loads(path.read_text())
        metrics = {str(k): float(v) for k, v in stored["metrics"].items()}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        rank_zero_warn(f"Round-0 metrics cache {path} is unreadable ({err}); validating again.")
        return None
    return metrics if stored.get("key") == key else None


def write_metrics(key: str, metrics: Mapping[str, float], folder: Path | None = None) -> None:
    """Save ``metrics`` under ``key`` (call on global rank zero); non-finite values are not
    cached. The file is written whole under a private name, then renamed into place."""
    values = {str(k): float(v) for k, v in metrics.items()}
    if not all(math.isfinite(v) for v in values.values()):
        return
    folder = round_zero_cache_dir() if folder is None else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.json"
    scratch = path.with_name(f"{path.name}.partial-{os.getpid()}")
    scratch.write_text(json.dumps({"key": key, "metrics": values}, indent=1))
    os.replace(scratch, path)  # atomic on one file system


class RoundZeroEntry(NamedTuple):
    """A round-0 metrics cache look-up: its key, and the metrics (``None``: a miss)."""

    key: str
    metrics: dict[str, float] | None


def look_up(module: FederatedLoRAModule) -> RoundZeroEntry | None:
    """The module's round-0 cache entry (key and metrics, None on a miss), or None if not used."""
    trainer = module.trainer
    if not module.cache_round0_metrics:
        return None
    if trainer.world_size > 1 or len(trainer.num_val_batches) != 1:
        return None  # ranks would need one shared key: DDP runs validate
    if not math.isfinite(trainer.num_val_batches[0]):
        return None  # a loader without a length: its batches cannot be fingerprinted ahead
    files = folder_fingerprint(model_source(*module._source))
    if files is None:
        return None
    key = round_zero_key(_key_parts(module, files))
    return RoundZeroEntry(key, read_metrics(key))


def _key_parts(module: FederatedLoRAModule, files: list) -> dict[str, Any]:
    """Everything the module's round-0 metrics depend on."""
    trainer, state, saved = module.trainer, module.state_dict(), module._saved_keys()
    num_batches = int(trainer.num_val_batches[0])
    return {
        "module": f"{type(module).__module__}.{type(module).__qualname__}",
        "hparams": dict(module.hparams),
        "model_files": files,
        "model_config": module.model.config.to_json_string(use_diff=False),
        "dtypes": sorted({str(p.dtype) for p in module.model.parameters()}),
        "trained_tensors": tensors_digest((k, state[k]) for k in sorted(saved)),
        "ranks": module.ranks,
        "metrics": repr(module.val_metrics),
        "val_batches": [num_batches, batches_digest(trainer.val_dataloaders, num_batches)],
        "precision": str(trainer.precision),
        "device": module.device.type,
    }
