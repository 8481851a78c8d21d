"""Loading brokers from Dapr Component files.

A component file is YAML (one or more ``---`` documents) or JSON (``.json``)::

    apiVersion: dapr.io/v1alpha1
    kind: Component
    metadata:
      name: pubsub
    spec:
      type: pubsub.redis          # pubsub.in-memory | pubsub.redis | pubsub.jetstream
      version: v1
      metadata:
        - name: redisHost
          value: localhost:6379

Documents of another ``kind`` (Subscription, Configuration, ...) and components of a non-pub/sub
type (``state.*``, ``bindings.*``, ...) are skipped, so a Dapr components directory loads as it
is. Metadata values may be YAML scalars (``10``, ``true`` become ``"10"``, ``"true"``);
``secretKeyRef`` is not supported. Every setting is checked at load time; a broker is only made
(and later connects) when :meth:`Component.create` is called.

Errors are :class:`ComponentError`, naming the file, the component (when known), the field and
what is allowed. :func:`load_components` takes a file or a directory (its ``*.yaml``, ``*.yml`` and
``*.json`` files, not recursing) and returns ``name -> Component``; a name used twice is an error.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

from ._settings import SettingError, Settings
from .base import Broker, BrokerArgumentError
from .memory import MemoryBroker

__all__ = [
    "API_VERSION",
    "COMPONENT_TYPES",
    "Component",
    "ComponentError",
    "load_component_file",
    "load_components",
]

API_VERSION = "dapr.io/v1alpha1"
VERSIONS = ("v1",)
MEMORY_METADATA_NAMES = ("concurrency", "nakDelay")
COMPONENT_TYPES = ("pubsub.in-memory", "pubsub.jetstream", "pubsub.redis")
_SUFFIXES = (".json", ".yaml", ".yml")


class ComponentError(BrokerArgumentError):
    """A component file is unreadable or invalid. ``source`` is the file, ``component`` the
    component's name (None before it is known), ``field`` the offending field's path."""

    def __init__(self, source: str, component: str | None, field: str, message: str) -> None:
        where = f"{source}: " + (f"component {component!r}: " if component else "")
        super().__init__("component", f"{where}{field}: {message}")
        self.args = (self.detail,)  # the file comes first; no "<kind> broker:" prefix
        self.source = source
        self.component = component
        self.field = field


@dataclass(frozen=True)
class Component:
    """One pub/sub component: its identity and checked metadata. ``create()`` makes a new broker
    each time it is called (a broker is closed by its user)."""

    name: str
    type: str
    version: str
    source: str
    metadata: Mapping[str, str] = field(repr=False)
    _factory: Callable[[], Broker] = field(repr=False, compare=False)

    def create(self) -> Broker:
        return self._factory()


def _memory_factory(metadata: Mapping[str, str]) -> Callable[[], Broker]:
    read = Settings("memory", metadata, MEMORY_METADATA_NAMES)
    delay = read.duration("nakDelay", 1.0)
    concurrency = read.integer("concurrency", 1, minimum=1)
    return lambda: MemoryBroker(default_nack_delay=delay, default_concurrency=concurrency)


def _redis_factory(metadata: Mapping[str, str]) -> Callable[[], Broker]:
    from .redis_streams import RedisStreamsBroker, RedisStreamsSettings  # needs redis

    settings = RedisStreamsSettings.from_metadata(metadata)
    return lambda: RedisStreamsBroker(settings)


def _jetstream_factory(metadata: Mapping[str, str]) -> Callable[[], Broker]:
    from .jetstream import JetStreamBroker, JetStreamSettings  # needs nats-py

    settings = JetStreamSettings.from_metadata(metadata)
    return lambda: JetStreamBroker(settings)


_FACTORIES: dict[str, Callable[[Mapping[str, str]], Callable[[], Broker]]] = {
    "pubsub.in-memory": _memory_factory,
    "pubsub.jetstream": _jetstream_factory,
    "pubsub.redis": _redis_factory,
}


def _scalar(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _component(source: str, document: Mapping[str, Any]) -> Component | None:
    def fail(field: str, message: str, name: str | None = None) -> ComponentError:
        return ComponentError(source, name, field, message)

    if document.get("kind") != "Component":
        return None
    if document.get("apiVersion") != API_VERSION:
        raise fail("apiVersion", f"{document.get('apiVersion')!r}; allowed is {API_VERSION}")
    meta = document.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name.strip():
        raise fail("metadata.name", "missing; a component needs a non-empty name")
    spec = document.get("spec")
    if not isinstance(spec, Mapping):
        raise fail("spec", "missing or not a mapping", name)
    kind = spec.get("type")
    if not isinstance(kind, str) or not kind:
        raise fail("spec.type", f"missing; allowed are {', '.join(COMPONENT_TYPES)}", name)
    if not kind.startswith("pubsub."):
        return None  # a state store, binding, ...: not ours to load
    if kind not in _FACTORIES:
        raise fail(
            "spec.type", f"{kind!r} is unknown; allowed are {', '.join(COMPONENT_TYPES)}", name
        )
    version = spec.get("version")
    if version not in VERSIONS:
        raise fail("spec.version", f"{version!r}; allowed are {', '.join(VERSIONS)}", name)
    entries = spec.get("metadata") or []
    if not isinstance(entries, list):
        raise fail("spec.metadata", "not a list of {name, value}", name)
    values: dict[str, str] = {}
    for index, entry in enumerate(entries):
        where = f"spec.metadata[{index}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise fail(where, "not a {name, value} mapping with a string name", name)
        key: str = entry["name"]
        if "secretKeyRef" in entry:
            raise fail(f"{where} ({key})", "secretKeyRef is not supported; give a value", name)
        value = _scalar(entry.get("value", ""))
        if value is None:
            raise fail(f"{where} ({key})", "value must be a string, number or boolean", name)
        if key in values:
            raise fail(f"{where} ({key})", "given twice", name)
        values[key] = value
    try:
        factory = _FACTORIES[kind](values)
    except SettingError as exc:
        raise fail(f"spec.metadata ({exc.field})", exc.detail, name) from None
    except BrokerArgumentError as exc:
        raise fail("spec.metadata", exc.detail, name) from None
    frozen = MappingProxyType(values)
    return Component(name, kind, version, source, frozen, factory)


def load_component_file(path: str | pathlib.Path) -> list[Component]:
    """The pub/sub components in one file, in order."""
    file = pathlib.Path(path)
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ComponentError(source, None, "(file)", f"cannot be read: {exc.strerror}") from None
    try:
        if file.suffix == ".json":
            documents: list[Any] = [json.loads(text)]
        else:
            documents = list(yaml.safe_load_all(text))
    except (ValueError, yaml.YAMLError) as exc:
        raise ComponentError(source, None, "(document)", f"not valid YAML/JSON: {exc}") from None
    found: list[Component] = []
    for document in documents:
        if document is None:
            continue
        if not isinstance(document, Mapping):
            raise ComponentError(source, None, "(document)", "not a mapping")
        component = _component(source, document)
        if component is not None:
            found.append(component)
    return found


def load_components(path: str | pathlib.Path) -> dict[str, Component]:
    """``name -> Component`` from a component file or a directory of them."""
    root = pathlib.Path(path)
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in _SUFFIXES)
    elif root.exists():
        files = [root]
    else:
        raise ComponentError(str(root), None, "(path)", "no such file or directory")
    loaded: dict[str, Component] = {}
    for file in files:
        for component in load_component_file(file):
            earlier = loaded.get(component.name)
            if earlier is not None:
                raise ComponentError(
                    component.source,
                    component.name,
                    "metadata.name",
                    f"already defined in {earlier.source}; names must be unique",
                )
            loaded[component.name] = component
    return loaded
