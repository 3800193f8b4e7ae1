"""Objects that remember the arguments they were built with, so checkpoints can rebuild them.

A module's pluggable parts (task, aggregator, links, quantisers, SNR and fading models ...) may
be given as objects built in Python rather than from YAML. Their attributes need not be named
like their arguments (``UniformQuantizer(bits=4)`` keeps ``levels``), so the checkpoint's
hyperparameters store the arguments themselves: ``__new__`` receives exactly what ``__init__``
does, and keeps them, defaults filled in, as ``init_args``. No heavy import: the channel
package and the pre-flight path may use it.
"""

from __future__ import annotations

import inspect
from typing import Any

_RECORD = "_init_args"


class RecordsInitArgs:
    """Mixin for pluggable parts: ``recorded_init_args(obj)`` gives the arguments it was built
    with (defaults included), the ``init_args`` of its ``{"class_path", "init_args"}`` form."""

    def __new__(cls, *args: Any, **kwargs: Any):
        obj = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind(obj, *args, **kwargs)
        except TypeError:
            return obj  # copy and pickle call __new__ bare, then restore the recorded state
        bound.apply_defaults()
        obj.__dict__[_RECORD] = _keywords(bound)
        return obj


def _keywords(bound: inspect.BoundArguments) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for name, param in list(bound.signature.parameters.items())[1:]:  # drop self
        value = bound.arguments.get(name)
        if param.kind is param.VAR_POSITIONAL:
            if value:
                return None  # positional extras have no name to store them under
        elif param.kind is param.VAR_KEYWORD:
            out.update(value or {})
        else:
            out[name] = value
    return out


def recorded_init_args(obj: Any) -> dict[str, Any] | None:
    """The arguments ``obj`` was built with, or ``None`` if it did not record them."""
    recorded = getattr(obj, "__dict__", {}).get(_RECORD)
    return dict(recorded) if isinstance(recorded, dict) else None
