"""Each package's public API is explicit: a sorted ``__all__`` whose names all resolve.

The root, ``grpc_channel``, exports the everyday names only (dial, Channel, every ``with_*`` dial
option and every call option function, Metadata, the invoke request and response, wrap, the
errors); the option record classes, settings and helpers live in the module that owns them
(``grpc_channel.call_options``, ``.dial_options``, ``.defaults``, ...), each with its own sorted
``__all__``. ``grpc_channel.aio`` and ``grpc_channel.interceptors`` re-export their private modules.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import pytest

PACKAGES = ("grpc_channel", "grpc_channel.aio", "grpc_channel.interceptors", "grpc_channel.bench")

# The public modules of grpc_channel, each owning one concept.
PUBLIC_MODULES = (
    "grpc_channel.call_options",
    "grpc_channel.channel",
    "grpc_channel.credentials",
    "grpc_channel.defaults",
    "grpc_channel.dial_options",
    "grpc_channel.dialing",
    "grpc_channel.encoding",
    "grpc_channel.invoke",
    "grpc_channel.metadata",
    "grpc_channel.stubs",
)

# Modules whose every export must be re-exported by the package named here.
REEXPORTED_BY = {
    "grpc_channel._async_channel": "grpc_channel.aio",
}

# The root's size, bounded so that it stays the everyday vocabulary: 23 with_* dial options, 13
# call options, the two option bases, Peer, dial/Channel/with_raise_errors, the invoke request,
# response, status and their enums, Metadata, wrap, bind and seven errors make 57.
ROOT_MAX_NAMES = 60


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetically."""
    if name.isupper():
        return (0, name)
    return (1 if name[:1].isupper() else 2, name)


def _all(module: ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    assert isinstance(names, list), f"{module.__name__} has no __all__ list"
    return names


@pytest.mark.parametrize("name", PACKAGES + PUBLIC_MODULES)
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


def test_every_root_name_is_owned_by_a_public_module() -> None:
    root = importlib.import_module("grpc_channel")
    owners: dict[str, list[str]] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in _all(module):
            if name in _all(root) and getattr(module, name) is getattr(root, name):
                owners.setdefault(name, []).append(module_name)
    unowned = sorted(set(_all(root)) - set(owners))
    assert not unowned, f"grpc_channel exports names no public module lists: {unowned}"


def test_root_exports_every_option_function() -> None:
    """Every ``with_*`` dial option and every call option function is importable from the root."""
    root = set(_all(importlib.import_module("grpc_channel")))
    for module_name, wanted in (
        ("grpc_channel.dial_options", lambda n: n.startswith("with_")),
        ("grpc_channel.call_options", lambda n: n[:1].islower()),
    ):
        functions = [n for n in _all(importlib.import_module(module_name)) if wanted(n)]
        assert functions, module_name
        missing = sorted(set(functions) - root)
        assert not missing, f"grpc_channel does not export {module_name}'s {missing}"


def test_root_exports_no_option_record_or_settings_class() -> None:
    from grpc_channel.call_options import CallInfo, CallOption
    from grpc_channel.defaults import Defaults
    from grpc_channel.dial_options import DialOption, DialSettings

    root = importlib.import_module("grpc_channel")
    records = [
        name
        for name in _all(root)
        if inspect.isclass(value := getattr(root, name))
        and issubclass(value, CallOption | DialOption)
        and value not in (CallOption, DialOption)
    ]
    assert not records, f"option record classes belong in their modules: {records}"
    named = [
        n
        for n in _all(root)
        if n.endswith(("CallOption", "DialOption")) and n not in {"CallOption", "DialOption"}
    ]
    assert not named, named
    settings = [n for n in _all(root) if getattr(root, n) in (CallInfo, DialSettings, Defaults)]
    assert not settings, f"settings records belong in their modules: {settings}"


def test_root_stays_small() -> None:
    names = _all(importlib.import_module("grpc_channel"))
    assert len(names) <= ROOT_MAX_NAMES, f"grpc_channel exports {len(names)} names: {names}"


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
