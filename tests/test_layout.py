"""The shape of the house, read from the source: no import cycles, no reaching into another
package's private modules, a benchmark registry that does not import its plug-ins, and one
vocabulary (one metadata-pairs alias, one call-shape enum, no name with two meanings).

Every module of ``grpc_channel`` (with ``grpc_channel.interceptors`` and ``grpc_channel.bench``,
which are symlinked into it) is parsed with :mod:`ast`, not imported. An import counts wherever it
is written, at module level or inside a function (a function-local import that dodges a cycle is
still a cycle); only the ``if TYPE_CHECKING:`` blocks are left out, since they never run.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import os
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

ROOT_PACKAGE = "grpc_channel"


def _package_dir() -> pathlib.Path:
    spec = importlib.util.find_spec(ROOT_PACKAGE)
    assert spec is not None and spec.submodule_search_locations
    return pathlib.Path(next(iter(spec.submodule_search_locations)))


def _find_modules() -> dict[str, pathlib.Path]:
    """Module name -> source file; follows the interceptors/bench symlinks."""
    root = _package_dir()
    found: dict[str, pathlib.Path] = {}
    for folder, _, files in os.walk(root, followlinks=True):
        for file in files:
            if not file.endswith(".py"):
                continue
            path = pathlib.Path(folder) / file
            parts = [ROOT_PACKAGE, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _find_modules()


@dataclass(frozen=True)
class Import:
    importer: str
    line: int
    module: str  # the imported module, resolved to an absolute name
    name: str | None  # ``from module import name``; None for ``import module``

    @property
    def target(self) -> str:
        """The grpc_channel module this import loads: ``module.name`` when that is a module."""
        if self.name is not None and f"{self.module}.{self.name}" in MODULES:
            return f"{self.module}.{self.name}"
        return self.module

    def __str__(self) -> str:
        what = self.module if self.name is None else f"{self.module}:{self.name}"
        return f"{self.importer} (line {self.line}) imports {what}"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if MODULES[importer].name != "__init__.py":
        base.pop()  # a plain module's relative imports start at its package
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports(importer: str) -> Iterator[Import]:
    tree = ast.parse(MODULES[importer].read_text(encoding="utf-8"))

    def walk(node: ast.AST) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    yield from walk_one(other)
                continue
            yield from walk_one(child)

    def walk_one(node: ast.AST) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(importer, node.lineno, alias.name, None)
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(importer, node)
            for alias in node.names:
                yield Import(importer, node.lineno, module, alias.name)
        else:
            yield from walk(node)

    yield from walk(tree)


IMPORTS = {name: [i for i in _imports(name) if i.target in MODULES] for name in MODULES}


def _package_of(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _private(module: str) -> bool:
    """Private within its own package: the module's own name starts with ``_`` (``__init__`` is
    the package itself, ``__main__`` an entry point)."""
    last = module.rpartition(".")[2]
    return last.startswith("_") and MODULES[module].name != "__init__.py"


def _static_all(module: str) -> set[str] | None:
    """The module's ``__all__`` as written (a list or tuple of strings), or None without one."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            and isinstance(node.value, ast.List | ast.Tuple)
        ):
            return {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
    return None


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_the_walk_sees_every_package() -> None:
    for module in (
        "grpc_channel",
        "grpc_channel.call_options",
        "grpc_channel.interceptors",
        "grpc_channel.interceptors._chain",
        "grpc_channel.bench",
        "grpc_channel.bench.variants",
    ):
        assert module in MODULES, module
    assert "grpc_channel.options" not in MODULES, "options.py was split; it must not come back"


def test_find_cycle_reports_the_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles() -> None:
    graph = {name: {i.target for i in imports} - {name} for name, imports in IMPORTS.items()}
    cycle = _find_cycle(graph)
    if cycle is not None:
        steps = []
        for here, there in itertools.pairwise(cycle):
            where = next(i for i in IMPORTS[here] if i.target == there)
            steps.append(str(where))
        pytest.fail("import cycle: " + " -> ".join(cycle) + "\n  " + "\n  ".join(steps))


def _crossings() -> Iterator[Import]:
    """Imports from one package of ours into another (the root, interceptors, bench, v1)."""
    for imports in IMPORTS.values():
        for imp in imports:
            if _package_of(imp.importer) != _package_of(imp.target):
                yield imp


def test_no_module_imports_another_packages_private_module() -> None:
    offenders = [str(i) for i in _crossings() if _private(i.target)]
    assert not offenders, "private modules imported from another package:\n" + "\n".join(offenders)


def test_imports_across_packages_use_only_exported_names() -> None:
    """``from grpc_channel.interceptors import X`` (and the bench's imports of grpc_channel) take
    only names in that module's ``__all__``, or its submodules."""
    offenders = []
    for imp in _crossings():
        if imp.name is None or imp.target != imp.module:
            continue  # ``import m`` or ``from package import submodule``
        exported = _static_all(imp.module)
        if exported is not None and imp.name not in exported:
            offenders.append(f"{imp} (not in its __all__)")
    assert not offenders, "\n".join(offenders)


def test_interceptors_never_import_the_rest_of_grpc_channel() -> None:
    inside = "grpc_channel.interceptors"
    offenders = [
        str(i)
        for name, imports in IMPORTS.items()
        if name == inside or name.startswith(inside + ".")
        for i in imports
        if not (i.target == inside or i.target.startswith(inside + "."))
    ]
    assert not offenders, "\n".join(offenders)


def test_the_benchmark_registry_does_not_import_its_plug_ins() -> None:
    registry = "grpc_channel.bench.variants"
    # The package registers the plug-ins, so importing it would be importing them too.
    plug_ins = {"grpc_channel.bench", "grpc_channel.bench.ours"}
    offenders = [str(i) for i in IMPORTS[registry] if i.target in plug_ins]
    assert not offenders, "\n".join(offenders)
    # Nor by name, behind importlib's back.
    tree = ast.parse(MODULES[registry].read_text(encoding="utf-8"))
    by_name = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and any(
            isinstance(arg, ast.Constant)
            and isinstance(arg.value, str)
            and arg.value.startswith(ROOT_PACKAGE)
            for arg in node.args
        )
    ]
    assert not by_name, f"{registry} imports project modules by name on lines {by_name}"


def _top_level_definitions() -> Iterator[tuple[str, str, ast.AST]]:
    """``(module, name, node)`` for every top-level def, class and assignment."""
    for module, path in MODULES.items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                yield module, node.name, node
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        yield module, target.id, node.value
            elif (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.value is not None
            ):
                yield module, node.target.id, node.value


def test_one_metadata_pairs_alias() -> None:
    """grpcio-style ``(key, value)`` pairs have one name, defined once (in the interceptors, which
    stand alone) and imported everywhere else."""
    pairs = "tuple[str, str | bytes]"
    aliases = sorted(
        f"{module}.{name}"
        for module, name, value in _top_level_definitions()
        if not isinstance(value, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and isinstance(value, ast.Subscript)
        and pairs in ast.unparse(value)
        and ast.unparse(value).startswith(("tuple[", "list[", "Sequence["))
    )
    assert aliases == ["grpc_channel.interceptors._metadata_pairs.MetadataPairs"]


def test_one_call_shape_enum() -> None:
    shapes = sorted(
        f"{module}.{name}"
        for module, name, node in _top_level_definitions()
        if isinstance(node, ast.ClassDef)
        and any(
            isinstance(stmt, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "UNARY_UNARY" for t in stmt.targets)
            for stmt in node.body
        )
    )
    assert shapes == ["grpc_channel.interceptors._policy.CallShape"]


@pytest.mark.parametrize(
    ("name", "owner"),
    [
        ("outgoing_metadata", "grpc_channel.metadata"),  # the context's outgoing metadata
        ("call_metadata", "grpc_channel.call_options"),  # the call option
    ],
)
def test_names_keep_one_meaning(name: str, owner: str) -> None:
    defined = sorted(module for module, found, _ in _top_level_definitions() if found == name)
    assert defined == [owner]
