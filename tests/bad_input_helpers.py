"""Running the CLI in-process on bad input and checking its answer (exit 2, <= 3 lines)."""

from __future__ import annotations

import pytest

from lit_airlora.cli import main
from lit_airlora.cli.preflight import merged_config, walk
from tests.config_helpers import REPO, header_command

MAX_LINES = 3


def config_args(name: str) -> list[str]:
    """``--config`` arguments of the header command of ``configs/<name>``."""
    return [a for path in header_command(name) for a in ("--config", str(path))]


def merged(name: str) -> dict:
    """The merged YAML of ``configs/<name>``'s command (PyYAML only, nothing resolved)."""
    return merged_config(config_args(name))[0]


def has_path(config: dict, dotted: str) -> bool:
    """Whether the parent of ``dotted`` exists in ``config`` (the case applies to it)."""
    node = config
    for part in dotted.split(".")[:-1]:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return isinstance(node, dict)


def numeric_leaves(config: dict, prefix: str) -> list[str]:
    """Dotted paths of the numbers under ``prefix`` (channel and callback settings)."""
    out = []
    for path, value in walk(config):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if path.startswith(prefix) and number:
            out.append(path)
    return out


def assert_refused(capsys, args: list[str], name: str) -> str:
    """Run ``lit-airlora fit <args>``; it must exit 2 with <= 3 lines naming ``name``."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args])
    captured = capsys.readouterr()
    output = (captured.out + captured.err).strip()
    lines = output.splitlines()
    assert exit_info.value.code == 2, output
    assert len(lines) <= MAX_LINES, output
    assert name in lines[0], output
    assert "Traceback" not in output and "weights_only=False" not in output
    return lines[0]


__all__ = ["REPO", "assert_refused", "config_args", "has_path", "merged", "numeric_leaves"]
