"""Constructor arguments as checkpoint hyperparameters: builtins in, objects back out.

Lightning loads checkpoints with ``weights_only=True``, so the objects a module is built from
(aggregator, task, links, LoRA settings ...) are stored as ``{"class_path", "init_args"}`` of
builtins, the form LightningCLI itself writes: the arguments the object recorded when it was
built (:class:`lit_airlora.init_args.RecordsInitArgs`), else its same-named attributes.
``load_from_checkpoint`` (and ``--ckpt_path`` in the CLI) then rebuilds the module alone. As in
Lightning's own checkpoint loading, a class path is only resolved inside this package or in a
module that is already imported, so a checkpoint never imports new code.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from dataclasses import fields, is_dataclass
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn

from lit_airlora.init_args import recorded_init_args

_SCALARS = (bool, int, float, str, type(None))


class NotStorableError(TypeError):
    """A constructor argument that cannot be written as builtins."""


def to_hparam(value: Any) -> Any:
    """``value`` as builtins: objects as ``{"class_path", "init_args"}``, dataclasses as dicts."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        return [to_hparam(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_hparam(v) for k, v in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_hparam(getattr(value, f.name)) for f in fields(value) if f.init}
    if isinstance(value, functools.partial):
        return _partial_spec(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if inspect.isroutine(value) or isinstance(value, type):
        raise NotStorableError(f"{value!r} is a function or class, not an object with arguments")
    return _object_spec(value)


def store_hparams(module, **values: Any) -> None:
    """Put ``values`` (built objects) into ``module.hparams`` as builtins.

    An entry that already holds builtins (the config LightningCLI hands to
    ``save_hyperparameters``) is kept as given. One that cannot be stored is left out with a
    warning that says to pass it again to ``load_from_checkpoint``.
    """
    stored = dict(module.hparams)
    for name, value in values.items():
        given = stored.pop(name, None)
        if given is not None and is_builtins(given):
            stored[name] = given
            continue
        try:
            stored[name] = to_hparam(value)
        except NotStorableError as err:
            module.hparams.pop(name, None)
            rank_zero_warn(
                f"`{name}` cannot be stored in the checkpoint's hyperparameters ({err}); pass it "
                f"again when loading: {type(module).__name__}.load_from_checkpoint(path, "
                f"{name}=...)."
            )
    module.save_hyperparameters(stored)


def is_builtins(value: Any) -> bool:
    """Whether ``value`` holds only scalars, strings, lists and string-keyed dicts."""
    if isinstance(value, _SCALARS):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_builtins(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_builtins(v) for k, v in value.items())
    return False


def from_hparam(value: Any, base: type | tuple[type, ...], name: str) -> Any:
    """The object behind ``value``: returned as is if it is a ``base``, built from its
    ``{"class_path", "init_args"}`` form (a checkpoint's hyperparameters) otherwise."""
    if value is None or isinstance(value, base):
        return value
    if isinstance(value, dict) and "class_path" in value:
        return _build(value, base, name)
    bases = base if isinstance(base, tuple) else (base,)
    raise TypeError(
        f"`{name}` ({value!r}) must be a {' or '.join(b.__name__ for b in bases)} or its "
        "{class_path: ..., init_args: ...} form."
    )


def factory_from_hparam(value: Any, base: type, name: str) -> Any:
    """A callable (``OptimizerCallable``) as given, or ``partial(cls, **init_args)`` from its
    ``{"class_path", "init_args"}`` form."""
    if isinstance(value, dict) and "class_path" in value:
        cls = resolve_class(value["class_path"], base, name)
        return functools.partial(cls, **value.get("init_args", {}))
    return value


def resolve_class(class_path: str, base: type | tuple[type, ...], name: str) -> type:
    """The class at ``class_path`` if it is a ``base`` from this package or an imported module."""
    module_name, _, attr = str(class_path).rpartition(".")
    module = sys.modules.get(module_name)
    if module is None and module_name.startswith("lit_airlora."):
        module = importlib.import_module(module_name)
    cls = getattr(module, attr, None) if module is not None else None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(
            f"`{name}` ({class_path!r}) is not a class of the expected kind in an imported "
            "module; import its module before loading."
        )
    return cls


def _build(spec: dict, base: type | tuple[type, ...], name: str) -> Any:
    cls = resolve_class(spec["class_path"], base, name)
    return cls(**{k: _build_nested(v, name) for k, v in spec.get("init_args", {}).items()})


def _build_nested(value: Any, name: str) -> Any:
    if isinstance(value, dict) and "class_path" in value:
        return _build(value, object, name)
    if isinstance(value, list):
        return [_build_nested(v, name) for v in value]
    return value


def _object_spec(value: Any) -> dict[str, Any]:
    cls = type(value)
    class_path = f"{cls.__module__}.{cls.__qualname__}"
    recorded = recorded_init_args(value)  # the arguments themselves (RecordsInitArgs parts)
    if recorded is not None:
        return {"class_path": class_path, "init_args": to_hparam(recorded)}
    init_args = {}
    for arg, param in inspect.signature(cls.__init__).parameters.items():
        if arg == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if not hasattr(value, arg):
            raise NotStorableError(
                f"{cls.__name__} keeps its argument `{arg}` under another name; keep it as a "
                "same-named attribute (or derive the class from lit_airlora.init_args."
                "RecordsInitArgs) so checkpoints can rebuild it"
            )
        init_args[arg] = to_hparam(getattr(value, arg))
    return {"class_path": class_path, "init_args": init_args}


def _partial_spec(value: functools.partial) -> dict[str, Any]:
    # jsonargparse's callables (``OptimizerCallable``) wrap the class as the first argument.
    classes = [a for a in (value.func, *value.args) if isinstance(a, type)]
    cls = classes[0] if classes else None
    if not isinstance(cls, type):
        raise NotStorableError(f"{value!r} is a partial function, not a class with arguments")
    init_args = {k: to_hparam(v) for k, v in value.keywords.items()}
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}
