"""One line out of a configuration error: the argument, its value, what is valid.

jsonargparse reports a bad nested value as a tree (every union member tried, the given value's
repr); our classes raise one line naming the argument in backticks. The line that matters is the
deepest one: our own message where there is one, else the parser's, prefixed by the dotted key.
"""

from __future__ import annotations

import re

_OURS = re.compile(r"`[^`]+`.*")
_KEY = re.compile(r'Parser key "([^"]+)":')
_CLASS = re.compile(r"Problem with given class_path '([^']+)':")
_NOISE = ("Does not validate against", "Subtypes:", "Errors:", "Given value")
_NONE_BRANCH = "Expected a <class 'NoneType'>"
_GIVEN = re.compile(r"Given value: (.*)")
MAX_CHARS = 400


def describe(error: BaseException) -> str:
    """A one-line description of ``error`` (its deepest meaningful message)."""
    text = str(error)
    ours = _OURS.search(text)
    if ours:
        return _clean(ours.group(0))
    if "Parser key" in text or "class_path" in text:
        return _clean(_parser_message(text))
    first = next((line for line in text.splitlines() if line.strip()), type(error).__name__)
    return _clean(first)


def _parser_message(text: str) -> str:
    """``"`a.b.c`: <deepest message>"`` from jsonargparse's indented error tree."""
    stack: list[tuple[int, str]] = []
    best: tuple[int, list[str], str] | None = None
    for raw in text.splitlines():
        line = raw.strip().removeprefix("- ").strip()
        if not line:
            continue
        indent = len(raw) - len(raw.lstrip())
        stack = [(i, k) for i, k in stack if i < indent]
        key, cls = _KEY.match(line), _CLASS.match(line)
        if key or cls:
            stack.append((indent, key.group(1) if key else "init_args"))
        elif _meaningful(line) and (best is None or indent > best[0]):
            best = (indent, [k for _, k in stack], line)
    if best is None:
        return text.splitlines()[0]
    _, keys, message = best
    given = _GIVEN.search(text)
    if "Got value" not in message and given and "NestedArg" not in given.group(1):
        message = f"{message} (got {given.group(1).strip()})"
    path = display_path(".".join(keys))
    return f"`{path}`: {message}" if path else message


def _meaningful(line: str) -> bool:
    return not line.startswith(_NOISE) and line != _NONE_BRANCH


def display_path(path: str) -> str:
    """``model.init_args.lora.rank`` -> ``model.lora.rank`` (both spellings work on the CLI)."""
    return ".".join(p for p in path.split(".") if p != "init_args")


def _clean(message: str) -> str:
    message = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", message)
    message = re.sub(r"Expected an? (\w+)\.? ?Got value: (.*)", r"expected \1, got \2", message)
    message = re.sub(r"Expected an? (\w+)", r"expected \1", message)
    message = " ".join(message.split())
    return message if len(message) <= MAX_CHARS else message[: MAX_CHARS - 3] + "..."
