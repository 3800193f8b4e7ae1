"""A model's shape read from its files alone: ``config.json`` and the safetensors headers.

A safetensors file starts with an 8-byte little-endian length and that many bytes of JSON
naming every tensor with its shape and byte range; a sharded model lists its shards in
``model.safetensors.index.json``. Reading these takes milliseconds and needs neither torch nor
transformers, so the pre-flight checks can test ``target_modules``, ranks and cut points against
the real model before anything heavy is imported. A model that is not on disk yet (a hub id
never downloaded, a GGUF file not dequantised yet) gives ``None``: the loader decides later.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from lit_airlora.errors import ConfigError
from lit_airlora.model_paths import PACKAGE_PREFIX, gguf_cache_dir, package_folder

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
#: transformers' ``Conv1D`` (weight stored ``(d_in, d_out)``) in these families' ``c_*`` layers.
_CONV1D_MODEL_TYPES = ("gpt2", "openai-gpt")
#: Names of a layer list's index under a head model's prefix (``model.layers.3.``).
_PREFIXED_BLOCK = re.compile(r"^[^.]+\.(?:[^.]+\.)*?[^.]+\.\d+\.")


@dataclass(frozen=True)
class ModelFiles:
    """What the files of one model say.

    Attributes:
        folder: The folder holding ``config.json``.
        config: ``config.json`` as a dict.
        shapes: Tensor name -> shape, from the safetensors headers.
    """

    folder: Path
    config: dict
    shapes: dict[str, tuple[int, ...]]

    @property
    def num_layers(self) -> int | None:
        """Transformer blocks (``num_hidden_layers``; GPT-2: ``n_layer``)."""
        value = self.config.get("num_hidden_layers", self.config.get("n_layer"))
        return value if isinstance(value, int) else None

    def linear_layers(self, head: str | None = "lm_head") -> dict[str, tuple[int, int]]:
        """``name -> (d_in, d_out)`` of the layers LoRA can adapt (linear or ``Conv1D``).

        Two-dimensional weights except embeddings. ``head``: the causal-LM head, added when its
        weight is tied to the embeddings (not stored), dropped when ``None`` (a model loaded with
        another head, e.g. for classification).
        """
        conv1d = self.config.get("model_type") in _CONV1D_MODEL_TYPES
        layers = {}
        for tensor, shape in self.shapes.items():
            name, _, kind = tensor.rpartition(".")
            last = name.rsplit(".", 1)[-1]
            if kind != "weight" or len(shape) != 2 or "embed" in last or last in ("wte", "wpe"):
                continue
            transposed = conv1d and last.startswith("c_")
            layers[name] = (shape[0], shape[1]) if transposed else (shape[1], shape[0])
        layers = {n: s for n, s in layers.items() if n.rsplit(".", 1)[-1] != "lm_head"}
        if head is not None:
            layers.update(self._head(head))
        return layers

    def _head(self, head: str) -> dict[str, tuple[int, int]]:
        stored = {t[: -len(".weight")]: s for t, s in self.shapes.items() if t.endswith(".weight")}
        if head in stored:
            return {head: (stored[head][1], stored[head][0])}
        hidden = self.config.get("hidden_size", self.config.get("n_embd"))
        vocab = self.config.get("vocab_size")
        tied = self.config.get("tie_word_embeddings", True)
        return {head: (hidden, vocab)} if tied and _ints(hidden, vocab) else {}

    @property
    def names_as_loaded(self) -> bool:
        """Whether weight names carry a head model's prefix (``model.layers.0...``) as the
        loaded model's module names do; a base model's bare names (``layers.0...``) do not."""
        numbered = [t for t in self.shapes if re.search(r"\.\d+\.", t)]
        return bool(numbered) and all(_PREFIXED_BLOCK.match(t) for t in numbered)


def _ints(*values: object) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def local_model_folder(model: str, gguf_file: str | None, cache_dir: str | None) -> Path | None:
    """The local folder holding ``model``'s ``config.json``, or ``None`` if it is not local yet."""
    if gguf_file:
        folder = gguf_cache_dir(model, gguf_file, cache_dir)
    elif model.startswith(PACKAGE_PREFIX):
        folder = Path(package_folder(model[len(PACKAGE_PREFIX) :]))
    elif Path(model).expanduser().is_dir():
        folder = Path(model).expanduser()
    else:
        folder = _hub_snapshot(model)
    return folder if folder is not None and (folder / "config.json").is_file() else None


def _hub_snapshot(repo_id: str) -> Path | None:
    if repo_id.count("/") > 1:
        return None
    from huggingface_hub import try_to_load_from_cache  # a few ms: imports lazily

    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def read_model_files(folder: Path) -> ModelFiles | None:
    """``config.json`` and the tensor shapes of ``folder``; ``None`` without safetensors."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(_damaged(folder / "config.json", "is not valid JSON")) from err
    if (folder / INDEX_FILE).is_file():
        shards = sorted(set(_index(folder / INDEX_FILE).values()))
        files = [folder / s for s in shards]
    elif (folder / SINGLE_FILE).is_file():
        files = [folder / SINGLE_FILE]
    else:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        shapes.update(safetensors_shapes(file))
    return ModelFiles(folder, config, shapes)


def _index(path: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(path.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(_damaged(path, "is not a valid shard index")) from err
    return weight_map


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header; a damaged file is named with the fix."""
    try:
        with path.open("rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            if length > 100_000_000:
                raise ValueError("header length out of range")
            header = json.loads(file.read(length))
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        end = max((v["data_offsets"][1] for v in tensors.values()), default=0)
        shapes = {k: tuple(int(d) for d in v["shape"]) for k, v in tensors.items()}
    except (OSError, ValueError, KeyError, TypeError, struct.error) as err:
        raise ConfigError(_damaged(path, "has no readable safetensors header")) from err
    if path.stat().st_size < 8 + length + end:
        raise ConfigError(_damaged(path, f"is truncated ({path.stat().st_size} bytes)"))
    return shapes


def _damaged(path: Path, problem: str) -> str:
    return (
        f"`model`: the file {path} {problem}; delete the folder {path.parent} and run again (a "
        "lit-airlora GGUF cache is rebuilt; a downloaded or saved model must be fetched or saved "
        "again)."
    )
