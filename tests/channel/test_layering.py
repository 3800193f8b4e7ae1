"""The radio layer knows nothing of rounds: lit_airlora.channel imports no round-level package."""

from __future__ import annotations

import ast
from pathlib import Path

import lit_airlora.channel

#: Packages above the radio: the channel takes tensors, shapes and generators from them.
ROUND_LEVEL = ("lit_airlora.federated", "lit_airlora.callbacks", "lit_airlora.module")
ROUND_LEVEL += ("lit_airlora.datamodules", "lit_airlora.policy", "lit_airlora.compression")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_channel_modules_import_no_round_level_package():
    folder = Path(lit_airlora.channel.__file__).parent
    offenders = {
        f"{path.name}: {module}"
        for path in sorted(folder.glob("*.py"))
        for module in _imports(path)
        if module.startswith(ROUND_LEVEL)
    }
    assert not offenders, sorted(offenders)
