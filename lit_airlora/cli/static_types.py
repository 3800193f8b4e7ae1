"""Config values against the annotations of the classes they build, read from source.

The LightningCLI parser (jsonargparse) answers an unknown argument, a wrong type or a missing
class only after importing torch, Lightning and every class of the config (6-9 s here). This
walks the merged config with the signatures of :mod:`lit_airlora.cli.signatures` and reports
the same mistakes in milliseconds. It refuses only what the parser certainly refuses: an
annotation it cannot read, a class it cannot find or a ``**kwargs`` accepts anything, and the
parser still checks the config afterwards.
"""

from __future__ import annotations

import ast
import difflib
import os
from dataclasses import dataclass
from typing import Any

import yaml

from lit_airlora.cli.signatures import (
    ClassSource,
    MissingError,
    Parameter,
    base_names,
    is_dataclass,
    resolve_class_path,
    resolve_name,
    signature,
)
from lit_airlora.errors import ConfigError

TRAINER = "lightning.pytorch.trainer.trainer.Trainer"
_LEAVES = {"int": int, "float": float, "str": str, "bool": bool, "None": type(None)}
_UNIONS = {"Optional", "Union"}
_SEQUENCES = {"list", "List", "Sequence", "Iterable", "MutableSequence", "set", "Set", "tuple"}
_SEQUENCES |= {"Tuple", "frozenset"}
_MAPPINGS = {"dict", "Dict", "Mapping", "MutableMapping"}
_CLASS_KEYS = {"class_path", "init_args", "dict_kwargs", "__path__"}
#: Classes whose values the parser converts itself (members, strings): never refused here.
_CONVERTED_BASES = {"Enum", "IntEnum", "StrEnum", "Flag", "IntFlag"}


@dataclass(frozen=True)
class Type:
    """An annotation as far as this checker reads it.

    Attributes:
        kind: ``"any"``, ``"leaf"``, ``"union"``, ``"sequence"``, ``"mapping"``,
            ``"literal"`` or ``"class"``.
        args: Leaf type, member types, item type, (key, value) types, choices or the class.
    """

    kind: str
    args: tuple = ()


ANY = Type("any")


def check_classes(config: dict) -> None:
    """Raise ``ConfigError`` for a value the parser would certainly refuse."""
    for key in ("model", "data"):
        node = config.get(key)
        if isinstance(node, dict) and "class_path" in node:
            check_class_node(key, node)
    trainer = config.get("trainer")
    if isinstance(trainer, dict):
        source = _resolve(TRAINER, "trainer")
        if source is not None:
            check_arguments("trainer", trainer, source, abbreviations=True)


def check_class_node(path: str, node: dict) -> None:
    """A ``{class_path, init_args}`` mapping: the class exists and takes these arguments."""
    class_path = node.get("class_path")
    if not isinstance(class_path, str):
        return
    source = _resolve(class_path, path)
    init_args = node.get("init_args")
    if source is not None and isinstance(init_args, dict):
        check_arguments(f"{path}.init_args", init_args, source)


def _resolve(class_path: str, path: str) -> ClassSource | None:
    try:
        return resolve_class_path(class_path)
    except MissingError as err:
        module, _, name = class_path.rpartition(".")
        if err.args and err.args[0] == module:
            raise ConfigError(
                f"`{path}` ({class_path!r}): no module `{module}` is installed; check the "
                "class_path (a dotted path to the class)."
            ) from None
        raise ConfigError(
            f"`{path}` ({class_path!r}): no class `{name}` in `{module}`; check the "
            "class_path (a dotted path to the class)."
        ) from None


def check_arguments(
    path: str, arguments: dict, source: ClassSource, abbreviations: bool = False
) -> None:
    """Every key is an argument of the class, and every value fits its annotation.

    ``abbreviations``: the arguments are options of the parser itself (the Trainer's), which
    argparse also takes by a unique prefix on the command line.
    """
    found = signature(source)
    if found is None:
        return
    for name, value in arguments.items():
        name = str(name)
        parameter = found.parameters.get(name)
        if parameter is None and abbreviations:
            parameter = _abbreviated(name, found.parameters)
        if parameter is None:
            if not found.open and not name.endswith("+"):
                raise ConfigError(_unknown(f"{path}.{name}", source, found.parameters))
            continue
        check_value(f"{path}.{name}", value, annotation_type(parameter))


def _abbreviated(name: str, parameters: dict[str, Parameter]) -> Parameter | None:
    matches = [p for key, p in parameters.items() if key.startswith(name)]
    return matches[0] if len(matches) == 1 else None


def _unknown(path: str, source: ClassSource, parameters: dict) -> str:
    name = path.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, list(parameters), n=1)
    if close:
        hint = f"did you mean `{close[0]}`?"
    elif len(parameters) <= 12:
        hint = f"valid: {', '.join(parameters) or 'none'}."
    elif path in (f"model.init_args.{name}", f"data.init_args.{name}"):
        hint = f"see `lit-airlora fit --{path.split('.')[0]}.help {source.name}`."
    else:
        hint = "see `lit-airlora fit --help`."
    return f"`{path}`: {source.name} has no argument `{name}`; {hint}"


def annotation_type(parameter: Parameter) -> Type:
    """The parameter's annotation as a :class:`Type` (a ``None`` default admits ``None``)."""
    if parameter.annotation is None:
        return ANY
    found = to_type(parameter.annotation, parameter.module)
    if parameter.default_none:
        return _union([found, Type("leaf", (type(None),))])
    return found


def to_type(node: ast.expr, module: str) -> Type:
    """Read an annotation expression (strings included) in the namespace of ``module``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return ANY
    if isinstance(node, ast.Constant) and node.value is None:
        return Type("leaf", (type(None),))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([to_type(node.left, module), to_type(node.right, module)])
    if isinstance(node, ast.Subscript):
        return _subscript(node, module)
    name = _name(node)
    if name in _LEAVES:
        return Type("leaf", (_LEAVES[name],))
    if name in _SEQUENCES:
        return Type("sequence", (ANY,))
    if name in _MAPPINGS:
        return Type("mapping", (ANY, ANY))
    if isinstance(node, ast.Name):
        source = resolve_name(module, node.id)
        if source is not None and not base_names(source) & _CONVERTED_BASES:
            return Type("class", (source,))
    return ANY


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _subscript(node: ast.Subscript, module: str) -> Type:
    name = _name(node.value)
    items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    if name in _UNIONS:
        members = [to_type(item, module) for item in items]
        if name == "Optional":
            members.append(Type("leaf", (type(None),)))
        return _union(members)
    if name == "Literal":
        if all(isinstance(item, ast.Constant) for item in items):
            return Type("literal", tuple(item.value for item in items))
        return ANY
    if name in ("tuple", "Tuple"):
        return Type("sequence", (ANY,))  # fixed-length tuples: left to the parser
    if name in _SEQUENCES:
        return Type("sequence", (to_type(items[0], module),))
    if name in _MAPPINGS and len(items) == 2:
        return Type("mapping", (to_type(items[0], module), to_type(items[1], module)))
    if name == "Annotated":
        return ANY  # validators the parser runs
    return ANY


def _union(members: list[Type]) -> Type:
    if any(m.kind == "any" for m in members):
        return ANY
    flat = [part for m in members for part in (m.args if m.kind == "union" else (m,))]
    return Type("union", tuple(dict.fromkeys(flat)))


def check_value(path: str, value: Any, expected: Type) -> None:
    """Raise ``ConfigError`` when ``value`` certainly does not fit ``expected``."""
    if _fits(path, value, expected):
        return
    raise ConfigError(f"`{path}` ({_show(value)}) must be {describe_type(expected)}.")


def _fits(path: str, value: Any, expected: Type) -> bool:
    """Whether ``value`` may fit (nested classes are checked, and raise, on the way)."""
    kind = expected.kind
    if kind == "any":
        return True
    if kind == "leaf":
        return _fits_leaf(value, expected.args[0])
    if kind == "literal":
        return value in expected.args or _loaded(value) in expected.args
    if kind == "union":
        return _fits_union(path, value, expected.args)
    if kind == "sequence":
        return _fits_sequence(path, value, expected.args[0])
    if kind == "mapping":
        return _fits_mapping(path, value, expected.args[1])
    return _fits_class(path, value, expected.args[0])


def _fits_leaf(value: Any, leaf: type) -> bool:
    if leaf is str:
        return not isinstance(value, (dict, list))  # the command line may give "5" as 5
    if leaf is type(None):
        return value is None
    value = _loaded(value)
    if leaf is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if leaf is float:
        return isinstance(value, (int, float)) or _is_float_text(value)
    return isinstance(value, int)


def _loaded(value: Any) -> Any:
    """A string as the parser's YAML loader reads it (``"true"`` -> True, ``"3"`` -> 3)."""
    if not isinstance(value, str):
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _is_float_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _fits_union(path: str, value: Any, members: tuple[Type, ...]) -> bool:
    # A nested class that fails its own checks raises only when no other member fits.
    errors = []
    for member in members:
        try:
            if _fits(path, value, member):
                return True
        except ConfigError as err:
            errors.append(err)
    if errors:
        raise errors[0]
    return False


def _fits_sequence(path: str, value: Any, item: Type) -> bool:
    if isinstance(value, str):
        return _may_be_file(value)  # a file with one item per line
    if not isinstance(value, list):
        return False
    for i, entry in enumerate(value):
        check_value(f"{path}.{i}", entry, item)
    return True


def _may_be_file(text: str) -> bool:
    # The parser reads a list from a file (relative to the config's folder): refuse only a
    # plain word that names no file here.
    return os.sep in text or "." in text or os.path.exists(text)


def _fits_mapping(path: str, value: Any, item: Type) -> bool:
    if isinstance(value, str):
        return True  # a YAML/JSON file or string
    if not isinstance(value, dict):
        return False
    for key, entry in value.items():
        check_value(f"{path}.{key}", entry, item)
    return True


def _fits_class(path: str, value: Any, source: ClassSource) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return True  # a class name, a class path or a config file
    if not isinstance(value, dict):
        return not _well_known(source)
    if "class_path" in value:
        check_class_node(path, value)
        return True
    if not set(value) & _CLASS_KEYS and is_dataclass(source.node):
        check_arguments(path, value, source)
    return True


def _well_known(source: ClassSource) -> bool:
    """Classes of this package and of Lightning: a number or list is never one of them."""
    return source.module.startswith(("lit_airlora.", "lightning."))


def describe_type(expected: Type) -> str:
    """What fits, in words: ``an integer``, ``one of 'a', 'b'``, ``a list``..."""
    kind = expected.kind
    if kind == "leaf":
        return {
            int: "an integer",
            float: "a number",
            str: "a string",
            bool: "true or false",
            type(None): "null",
        }[expected.args[0]]
    if kind == "literal":
        return "one of " + ", ".join(repr(c) for c in expected.args)
    if kind == "union":
        return " or ".join(dict.fromkeys(describe_type(m) for m in expected.args))
    if kind == "sequence":
        return "a list"
    if kind == "mapping":
        return "a mapping"
    if kind == "class":
        return f"a {expected.args[0].name} (class_path and init_args)"
    return "another value"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
