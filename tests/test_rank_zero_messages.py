"""Warnings reach the user once per run: the package warns through Lightning's rank-zero helpers,
never ``warnings.warn`` or ``logger.warning`` (which DDP would repeat on every process)."""

from __future__ import annotations

import ast
from pathlib import Path

import lit_airlora

PER_RANK_CALLS = {("warnings", "warn"), ("log", "warning"), ("logger", "warning")}
#: Warnings that only one process can emit, with the reason.
ONE_PROCESS = {
    # The process that finds the cache unreadable rebuilds it under a file lock; the others then
    # read the rebuilt file (and whichever rank it is must say so).
    "setup_cache.py",
}


def _per_rank_warnings(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        func = getattr(node, "func", None) if isinstance(node, ast.Call) else None
        named = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
        if named and (func.value.id, func.attr) in PER_RANK_CALLS:
            found.append(f"{path.name}:{node.lineno} {func.value.id}.{func.attr}")
    return found


def test_the_package_warns_through_rank_zero_helpers():
    root = Path(lit_airlora.__file__).parent
    paths = [p for p in sorted(root.rglob("*.py")) if p.name not in ONE_PROCESS]
    found = [hit for path in paths for hit in _per_rank_warnings(path)]
    assert not found, found
