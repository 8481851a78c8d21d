"""Pluggable benchmark variants: a registry of name -> factory of a call function for a target.

A variant is one way of making the same unary call (bare grpcio, our interceptors, our Channel,
...). Its factory gets the ``Target`` and the worker's ``VariantSettings`` and returns a caller: for
a sync variant a ``SyncCaller`` whose ``call()`` makes one call, for an aio variant (built inside
the worker's event loop) an ``AsyncCaller`` whose ``call()`` is awaited. ``call`` returns the status
code name (``"OK"`` on success); a failed call may instead raise ``grpc.RpcError`` (the runner reads
its code).

Each variant owns its channel (with a local subchannel pool, so variants never share a connection)
and closes it in ``close``. Variants that need code that is not there (an optional module, or an
OnInvoke target) report why through ``unavailable`` and are skipped, never half-run.

Built in here: ``grpc-sync`` (bare sync stub: ``unary_unary`` with the message classes),
``grpc-sync-raw`` (generic raw-bytes ``unary_unary``), ``grpc-aio`` and ``grpc-aio-raw`` (the same
on ``grpc.aio``). The variants over this project's interceptors and Channel are built by
``grpc_channel.bench.ours`` and registered by the package (``grpc_channel.bench``), so this registry
never imports its plug-ins; ``register`` adds your own.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc
import grpc.aio

from .target import Target, resolve_message_types

__all__ = [
    "AsyncCaller",
    "SyncCaller",
    "Variant",
    "VariantError",
    "VariantSettings",
    "aio_unary",
    "available_variants",
    "channel_options",
    "get_variant",
    "probe",
    "register",
    "registered_variants",
    "sync_unary",
    "unregister",
]

Kind = Literal["sync", "aio"]


class VariantError(LookupError):
    """An unknown variant name, or a name registered twice."""


@dataclass(frozen=True)
class VariantSettings:
    """What a worker tells each variant it builds.

    ``concurrency`` is the most calls this worker keeps in flight for one variant (policy variants
    size their concurrency limit to it, so the limit is exercised but never makes callers wait);
    ``app_token`` is the token the token-sending variants send (a fixed, non-secret benchmark
    value).
    """

    concurrency: int = 1
    app_token: str = "bench-token"


@dataclass(frozen=True)
class SyncCaller:
    call: Callable[[], str]
    close: Callable[[], None]


@dataclass(frozen=True)
class AsyncCaller:
    call: Callable[[], Awaitable[str]]
    close: Callable[[], Awaitable[None]]


SyncFactory = Callable[[Target, VariantSettings], SyncCaller]
AsyncFactory = Callable[[Target, VariantSettings], Awaitable[AsyncCaller]]


def _always(target: Target) -> str | None:
    return None


@dataclass(frozen=True)
class Variant:
    """A registered variant. Exactly one of ``sync_factory`` and ``aio_factory`` is set.

    ``requires`` lists importable modules the factory needs; ``applies`` returns why the variant
    does not apply to a target (None when it does). ``family`` groups variants for the baseline
    choice: ``"sync"`` variants compare with the bare sync stub, ``"aio"`` ones with the bare aio
    stub. ``baselines`` names the variants this one prefers to be compared with, first present in
    the run wins, ahead of the family's defaults (the Channel variants name the bare stubs that put
    the same bytes and metadata on the wire).
    """

    name: str
    description: str
    sync_factory: SyncFactory | None = None
    aio_factory: AsyncFactory | None = None
    requires: tuple[str, ...] = ()
    applies: Callable[[Target], str | None] = field(default=_always, compare=False)
    baselines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.sync_factory is None) == (self.aio_factory is None):
            raise VariantError(f"variant {self.name!r}: give exactly one of sync/aio factory")

    @property
    def kind(self) -> Kind:
        return "sync" if self.sync_factory is not None else "aio"

    @property
    def module(self) -> str:
        """The module that registers this variant (imported by worker processes)."""
        factory = self.sync_factory or self.aio_factory
        return str(getattr(factory, "__module__", __name__))

    def unavailable(self, target: Target) -> str | None:
        """Why this variant cannot run against ``target`` (None when it can)."""
        for module in self.requires:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                return f"module {module} is not available ({exc})"
            except Exception as exc:
                # A module that exists but fails to import must not take the whole run down.
                return f"module {module} failed to import: {type(exc).__name__}: {exc}"
        return self.applies(target)


_REGISTRY: dict[str, Variant] = {}


def register(variant: Variant, *, replace: bool = False) -> Variant:
    """Add ``variant`` to the registry; a taken name raises VariantError unless ``replace``."""
    if variant.name in _REGISTRY and not replace:
        raise VariantError(f"variant {variant.name!r} is already registered")
    _REGISTRY[variant.name] = variant
    return variant


def unregister(name: str) -> None:
    """Remove a registered variant; an unknown name raises VariantError."""
    if _REGISTRY.pop(name, None) is None:
        raise VariantError(f"variant {name!r} is not registered")


def registered_variants() -> list[Variant]:
    """Every registered variant, in registration order (built-ins and ``grpc_channel.bench.ours``
    first)."""
    return list(_REGISTRY.values())


def get_variant(name: str) -> Variant:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise VariantError(f"unknown variant {name!r}; registered: {known}") from None


def available_variants(target: Target) -> tuple[list[Variant], list[tuple[str, str]]]:
    """The variants that can run against ``target``, and ``(name, reason)`` for those that
    cannot."""
    usable: list[Variant] = []
    skipped: list[tuple[str, str]] = []
    for variant in registered_variants():
        reason = variant.unavailable(target)
        if reason is None:
            usable.append(variant)
        else:
            skipped.append((variant.name, reason))
    return usable, skipped


def probe(variant: Variant, target: Target) -> str | None:
    """Build ``variant``'s caller for ``target`` and close it at once; no call is made.

    Returns why it could not be built (an API that changed under the variant, say), or None.
    Channels connect lazily, so this costs no round trip. Inside a running event loop the aio
    variants are not probed (``asyncio.run`` cannot nest).
    """
    settings = VariantSettings()
    try:
        if variant.sync_factory is not None:
            variant.sync_factory(target, settings).close()
        else:
            factory = variant.aio_factory
            assert factory is not None
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                return None

            async def build_and_close() -> None:
                caller = await factory(target, settings)
                await caller.close()

            asyncio.run(build_and_close())
    except Exception as exc:
        return f"could not be built: {type(exc).__name__}: {exc}"
    return None


def channel_options() -> list[tuple[str, int]]:
    """Channel arguments every variant uses: a connection of its own (local subchannel pool)."""
    return [("grpc.use_local_subchannel_pool", 1)]


# -- built-in bare grpcio variants
# ------------------------------------------------------------------


def _needs_types(target: Target) -> str | None:
    if target.request_type is None:
        return "the target has no message types (raw-bytes payload)"
    return None


def sync_unary(channel: grpc.Channel, target: Target, *, raw: bool = False) -> Callable[[], str]:
    """A call function for ``target`` on ``channel``: with the message classes when the target
    has them (a stub's way), else (or with ``raw``) bytes in and out."""
    types = None if raw else resolve_message_types(target)
    metadata = target.metadata or None
    timeout = target.timeout
    if types is None:
        method = channel.unary_unary(target.method, None, None)
        payload: Any = target.payload
    else:
        request_cls, response_cls = types
        method = channel.unary_unary(
            target.method,
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        payload = request_cls.FromString(target.payload)

    def call() -> str:
        method(payload, metadata=metadata, timeout=timeout)
        return "OK"

    return call


def aio_unary(
    channel: grpc.aio.Channel, target: Target, *, raw: bool = False
) -> Callable[[], Awaitable[str]]:
    """The ``grpc.aio`` form of :func:`sync_unary`."""
    types = None if raw else resolve_message_types(target)
    metadata = target.metadata or None
    timeout = target.timeout
    if types is None:
        method = channel.unary_unary(target.method, None, None)
        payload: Any = target.payload
    else:
        request_cls, response_cls = types
        method = channel.unary_unary(
            target.method,
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        payload = request_cls.FromString(target.payload)

    async def call() -> str:
        await method(payload, metadata=metadata, timeout=timeout)
        return "OK"

    return call


def _sync_stub(target: Target, settings: VariantSettings) -> SyncCaller:
    channel = grpc.insecure_channel(target.address, options=channel_options())
    return SyncCaller(sync_unary(channel, target), channel.close)


def _sync_raw(target: Target, settings: VariantSettings) -> SyncCaller:
    channel = grpc.insecure_channel(target.address, options=channel_options())
    return SyncCaller(sync_unary(channel, target, raw=True), channel.close)


async def _aio_stub(target: Target, settings: VariantSettings) -> AsyncCaller:
    channel = grpc.aio.insecure_channel(target.address, options=channel_options())

    async def close() -> None:
        await channel.close(None)

    return AsyncCaller(aio_unary(channel, target), close)


async def _aio_raw(target: Target, settings: VariantSettings) -> AsyncCaller:
    channel = grpc.aio.insecure_channel(target.address, options=channel_options())

    async def close() -> None:
        await channel.close(None)

    return AsyncCaller(aio_unary(channel, target, raw=True), close)


register(
    Variant(
        "grpc-sync",
        "bare grpcio sync stub (unary_unary with the message classes)",
        sync_factory=_sync_stub,
        applies=_needs_types,
    )
)
register(
    Variant("grpc-sync-raw", "bare grpcio generic unary_unary, raw bytes", sync_factory=_sync_raw)
)
register(
    Variant(
        "grpc-aio",
        "bare grpc.aio stub, awaited (unary_unary with the message classes)",
        aio_factory=_aio_stub,
        applies=_needs_types,
    )
)
register(
    Variant("grpc-aio-raw", "bare grpc.aio generic unary_unary, raw bytes", aio_factory=_aio_raw)
)
# A/A checks: the baseline again, on a channel of its own. Any distance of their ratio from 1 is
# the run's noise (and any bias of the harness for or against the baseline), which is the margin
# to read every other ratio of the run with.
register(
    Variant(
        "grpc-sync-again",
        "grpc-sync again on its own channel: an A/A check, its ratio is the run's noise",
        sync_factory=_sync_stub,
        applies=_needs_types,
    )
)
register(
    Variant(
        "grpc-aio-again",
        "grpc-aio again on its own channel: an A/A check, its ratio is the run's noise",
        aio_factory=_aio_stub,
        applies=_needs_types,
    )
)

SYNC_BASELINES = ("grpc-sync", "grpc-sync-raw")
"""Preferred baselines for sync variants, first available wins."""
AIO_BASELINES = ("grpc-aio", "grpc-aio-raw")
"""Preferred baselines for aio variants, first available wins."""
