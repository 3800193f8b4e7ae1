"""``--ckpt_path`` checks: a missing, empty, corrupt or foreign file is a one-line error.

Lightning restores with ``torch.load(weights_only=True)``; a file that fails that is not one of
ours, and the fix is another file, never an unsafe load.
"""

from __future__ import annotations

import pickle
from typing import Any

from lit_airlora.cli.preflight import check_checkpoint_file
from lit_airlora.errors import ConfigError

_SPECIAL = {"last", "best", "hpc", "registry"}


def check_checkpoint(ckpt_path: str, model: Any = None) -> None:
    """Raise ``ConfigError`` unless ``ckpt_path`` is a Lightning checkpoint ``model`` can load."""
    if str(ckpt_path) in _SPECIAL:
        return
    check_checkpoint_file(str(ckpt_path))
    checkpoint = _load(str(ckpt_path))
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(
            f"`--ckpt_path` ({ckpt_path!r}) is not a Lightning checkpoint (no state_dict): "
            "give a .ckpt file written by lit-airlora."
        )
    check = getattr(model, "check_checkpoint", None)
    if callable(check):
        check(checkpoint, str(ckpt_path))


def _load(ckpt_path: str) -> Any:
    import torch

    try:
        return torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ConfigError(
            f"`--ckpt_path` ({ckpt_path!r}) holds objects a safe load refuses: it was not "
            "written by lit-airlora. Give a checkpoint of this project."
        ) from err
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise ConfigError(
            f"`--ckpt_path` ({ckpt_path!r}) is corrupt or truncated ({type(err).__name__}): "
            "give another checkpoint."
        ) from err
