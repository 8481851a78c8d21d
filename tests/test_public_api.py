"""Each package's public API is explicit: a sorted ``__all__`` whose names all resolve.

Every name a public module lists is reachable from its package root, so users import from
``grpc_channel``, ``grpc_channel.aio`` and ``grpc_channel.interceptors`` rather than from private
modules.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

PACKAGES = ("grpc_channel", "grpc_channel.aio", "grpc_channel.interceptors", "grpc_channel.bench")

# Public modules whose every export must be re-exported by the package root named here.
REEXPORTED_BY = {
    "grpc_channel.metadata": "grpc_channel",
    "grpc_channel.invoke": "grpc_channel",
    "grpc_channel.options": "grpc_channel",
    "grpc_channel.encoding": "grpc_channel",
    "grpc_channel.channel": "grpc_channel",
    "grpc_channel.stubs": "grpc_channel",
    "grpc_channel._async_channel": "grpc_channel.aio",
}


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetically."""
    if name.isupper():
        return (0, name)
    return (1 if name[:1].isupper() else 2, name)


def _all(module: ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    assert isinstance(names, list), f"{module.__name__} has no __all__ list"
    return names


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_unique_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    names = _all(module)
    assert names == sorted(names, key=_isort_key), f"{name}.__all__ is not in RUF022 order"
    assert len(names) == len(set(names)), f"{name}.__all__ repeats a name"
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names missing attributes: {missing}"


@pytest.mark.parametrize(("module_name", "package_name"), sorted(REEXPORTED_BY.items()))
def test_public_modules_are_reexported(module_name: str, package_name: str) -> None:
    module = importlib.import_module(module_name)
    package = importlib.import_module(package_name)
    package_names = set(_all(package))
    not_reexported = sorted(n for n in _all(module) if n not in package_names)
    assert not not_reexported, f"{package_name} does not re-export {not_reexported}"
    for name in _all(module):
        assert getattr(package, name) is getattr(module, name), f"{package_name}.{name} differs"


def test_interceptors_never_import_grpc_channel() -> None:
    """The interceptors package stands alone: it must not depend on the rest of grpc_channel (it is
    installed inside it, and imports its own modules relatively)."""
    import pathlib

    root = pathlib.Path(importlib.import_module("grpc_channel.interceptors").__file__ or "").parent
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(root.glob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if line.lstrip().startswith(("import grpc_channel", "from grpc_channel"))
    ]
    assert not offenders, f"interceptors modules import grpc_channel: {offenders}"
