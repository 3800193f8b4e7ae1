"""Class signatures read from source with ``ast``, without importing the class's module.

The preflight checks use them to answer unknown arguments, wrong types and missing classes
before torch and Lightning are imported (about 6 s here, more than the 5 s a failing config
may take). Only what the source says for sure is returned; anything this reader cannot follow
(a ``**kwargs`` passed on, a base class it cannot find, a name made at run time) is "unknown"
and left to the LightningCLI parser, which still checks everything after the imports.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Base classes whose ``__init__`` takes no argument.
_NO_ARGUMENT_BASES = {"object", "ABC", "Protocol", "Generic"}


@dataclass(frozen=True)
class ClassSource:
    """A class found in a module's source.

    Attributes:
        module: Dotted module name where the class is defined.
        node: Its ``ClassDef``.
    """

    module: str
    node: ast.ClassDef = field(compare=False)

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.node.name}"


@dataclass
class Parameter:
    """One ``__init__`` argument, its annotation (``None``: none), whether it defaults to None."""

    name: str
    annotation: ast.expr | None
    module: str
    default_none: bool = False


@dataclass
class Signature:
    """The arguments of a class: ``open`` when more are accepted than listed (``**kwargs``)."""

    parameters: dict[str, Parameter]
    open: bool = False


def module_file(module: str) -> Path | None:
    """The source file of ``module``, found without importing it or its parent packages."""
    top, *rest = module.split(".")
    spec = _find_spec(top)  # a top-level name: nothing is imported
    if spec is None:
        return None
    if not rest:
        origin = spec.origin or ""
        return Path(origin) if origin.endswith(".py") else None
    for location in spec.submodule_search_locations or []:
        base = Path(location).joinpath(*rest)
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                return candidate
    return None


@functools.cache
def module_tree(module: str) -> ast.Module | None:
    """The parsed source of ``module`` (``None``: not found or not parseable)."""
    path = module_file(module)
    if path is None:
        return None
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None


def _top_level(tree: ast.Module):
    """Module-level statements, including those under ``if``/``try`` (not inside functions)."""
    stack = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.If, ast.Try)):
            children = [*node.body, *node.orelse, *getattr(node, "finalbody", [])]
            for handler in getattr(node, "handlers", []):
                children.extend(handler.body)
            stack.extend(reversed(children))


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_package(module: str) -> bool:
    path = module_file(module)
    return path is not None and path.name == "__init__.py"


class MissingError(LookupError):
    """The module's source is known and certainly defines no such name."""


def find_class(module: str, name: str, depth: int = 0) -> ClassSource | None:
    """The class ``module.name``, following re-exports; ``None`` when it cannot be told.

    Raises:
        MissingError: ``module`` was read and defines, imports and re-exports no ``name``.
    """
    tree = module_tree(module)
    if tree is None or depth > 8:
        return None
    dynamic = False
    for node in _top_level(tree):
        if isinstance(node, ast.ClassDef) and node.name == name:
            return ClassSource(module, node)
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    dynamic = True
                elif (alias.asname or alias.name) == name:
                    source = _absolute(module, node, _is_package(module))
                    return _follow(source, alias.name, depth)
        elif isinstance(node, ast.Import) and any(
            (a.asname or a.name.split(".")[0]) == name for a in node.names
        ):
            return None  # a module, not a class: left to the parser
        elif _defines(node, name) or _is_module_getattr(node):
            dynamic = True
    if dynamic:
        return None
    if _is_package(module) and module_file(f"{module}.{name}") is not None:
        return None  # a submodule: the parser says what is wrong with it
    raise MissingError(f"{module}.{name}")


def _follow(module: str, name: str, depth: int) -> ClassSource | None:
    try:
        return find_class(module, name, depth + 1)
    except MissingError:
        return None  # e.g. a submodule imported by name: not for us to judge


def _defines(node: ast.stmt, name: str) -> bool:
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(isinstance(t, ast.Name) and t.id == name for t in targets)
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name


def _is_module_getattr(node: ast.stmt) -> bool:
    return isinstance(node, ast.FunctionDef) and node.name == "__getattr__"


def resolve_name(module: str, name: str) -> ClassSource | None:
    """A class named ``name`` as seen from ``module`` (defined or imported there)."""
    try:
        return find_class(module, name)
    except MissingError:
        return None


def resolve_class_path(class_path: str) -> ClassSource | None:
    """The class of a dotted ``class_path``; ``None`` when it cannot be told statically.

    Raises:
        MissingError: The module's source certainly has no such class (``args[0]``: the
            dotted name), or its package is not installed (``args[0]``: the module).
    """
    module, _, name = class_path.rpartition(".")
    if not module:
        return None  # a bare class name: the parser resolves it among the subclasses
    if module_file(module) is None:
        if _find_spec(module.split(".")[0]) is None:
            raise MissingError(module)  # no such package installed
        return None
    return find_class(module, name)


def _find_spec(top: str):
    try:
        return importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None


def signature(source: ClassSource, depth: int = 0) -> Signature | None:
    """The ``__init__`` arguments of a class; ``None`` when they cannot be told statically."""
    if depth > 8:
        return None
    init = next(
        (n for n in source.node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"),
        None,
    )
    if init is not None:
        return _function_signature(init, source.module)
    if is_dataclass(source.node):
        return _dataclass_signature(source, depth)
    return _inherited_signature(source, depth)


def _function_signature(init: ast.FunctionDef, module: str) -> Signature:
    args = init.args
    positional = [*args.posonlyargs, *args.args][1:]  # drop self
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = [
        *zip(positional, defaults, strict=True),
        *zip(args.kwonlyargs, args.kw_defaults, strict=True),
    ]
    parameters = {
        arg.arg: Parameter(arg.arg, arg.annotation, module, _is_none(default))
        for arg, default in pairs
    }
    return Signature(parameters, open=args.kwarg is not None)


def _is_none(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def is_dataclass(node: ast.ClassDef) -> bool:
    """Whether the class is decorated with ``@dataclass`` (its fields are its arguments)."""
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "dataclass":
            return True
    return False


def _dataclass_signature(source: ClassSource, depth: int) -> Signature | None:
    parameters: dict[str, Parameter] = {}
    for base in _bases(source):
        if base is None:
            return None
        inherited = signature(base, depth + 1)
        if inherited is None:
            return None
        parameters.update(inherited.parameters)
    for node in source.node.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if "ClassVar" in ast.unparse(node.annotation):
                continue
            name = node.target.id
            parameters[name] = Parameter(name, node.annotation, source.module, _is_none(node.value))
    return Signature(parameters)


def _inherited_signature(source: ClassSource, depth: int) -> Signature | None:
    for base in _bases(source):
        if base is None:
            return None
        inherited = signature(base, depth + 1)
        if inherited is None or inherited.parameters or inherited.open:
            return inherited
    return Signature({})


def _bases(source: ClassSource) -> list[ClassSource | None]:
    """The class's bases (``None`` for one this reader cannot find); trivial ones dropped."""
    out = []
    for base in source.node.bases:
        node = base.value if isinstance(base, ast.Subscript) else base
        name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
        if name in _NO_ARGUMENT_BASES:
            continue
        found = resolve_name(source.module, name) if isinstance(node, ast.Name) else None
        out.append(found)
    return out


def base_names(source: ClassSource, depth: int = 0) -> set[str]:
    """Names of the class and of every base this reader can follow (``Enum``, ``Callback``...)."""
    names = {source.name}
    if depth > 8:
        return names
    for base in source.node.bases:
        node = base.value if isinstance(base, ast.Subscript) else base
        name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
        names.add(name)
        found = resolve_name(source.module, name) if isinstance(node, ast.Name) else None
        if found is not None:
            names |= base_names(found, depth + 1)
    return names


#: What :func:`literal_default` returns for an argument without a literal default.
NO_DEFAULT = object()


def literal_default(source: ClassSource, name: str) -> Any:
    """The literal default of a dataclass field (``field(default_factory=lambda: [...])``
    included) or ``__init__`` argument; :data:`NO_DEFAULT` when it has none or is not a literal."""
    node = _default_node(source, name)
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "field":
        keywords = {k.arg: k.value for k in node.keywords}
        node = keywords.get("default", keywords.get("default_factory"))
        node = node.body if isinstance(node, ast.Lambda) else node
    try:
        return ast.literal_eval(node) if node is not None else NO_DEFAULT
    except ValueError:
        return NO_DEFAULT


def _default_node(source: ClassSource, name: str) -> ast.expr | None:
    for node in source.node.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == name:
            return node.value
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
            pairs = [
                *zip(positional, defaults, strict=True),
                *zip(args.kwonlyargs, args.kw_defaults, strict=True),
            ]
            return next((d for a, d in pairs if a.arg == name), None)
    return None


def accepted_arguments(class_path: str) -> set[str]:
    """Argument names of ``class_path``'s ``__init__``; empty when they cannot be told."""
    try:
        source = resolve_class_path(class_path)
    except MissingError:
        return set()
    found = signature(source) if source is not None else None
    return set(found.parameters) if found is not None and not found.open else set()
