"""Composition: ``compose(*policies) -> Chain`` and the ways to put a chain to work.

A :class:`Chain` runs all of its policies in one plain function around the real call, at the cost of
one layer (as grpcio interceptors) or of none (as a channel wrapper). First listed is outermost:
its start runs first and its finish last.

Spellings::

    chain = compose(Deadline(5.0), Retry(), AppToken("s3cret"), ConcurrencyLimit(8), Capture())

    channel = chain.wrap(grpc.insecure_channel(target))                 # fastest, sync
    channel = chain.wrap_aio(grpc.aio.insecure_channel(target))         # fastest, aio
    channel = grpc.intercept_channel(raw, *chain.client_interceptors())
    channel = grpc.aio.insecure_channel(target, interceptors=chain.aio_client_interceptors())
    server = grpc.server(pool, interceptors=chain.server_interceptors())
    server = grpc.aio.server(interceptors=chain.aio_server_interceptors())

A single policy has the same spellings on itself, each building ``compose(policy)`` once:
``ConcurrencyLimit(4).client_interceptor()``, ``.aio_client_interceptors()`` (four, one per
shape), ``.server_interceptor()``, ``.aio_server_interceptor()``, ``.wrap(channel)``,
``.wrap_aio(channel)``.

Client policies act in the client forms, server policies in the server forms; a policy that is both
(``ConcurrencyLimit``, ``Tracing``) acts in each. A chain may be composed into another chain
(its policies are spliced in place).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import grpc
import grpc.aio

from ._client_aio import AioClientInterceptor, WrappedAioChannel, aio_client_interceptors
from ._client_sync import ClientInterceptor, WrappedChannel
from ._policy import ClientPolicy, PolicyBase, ServerPolicy, overrides
from ._run import ServerRun, build_levels
from ._server import AioServerInterceptor, ServerInterceptor

__all__ = [
    "AioClientInterceptor",
    "AioServerInterceptor",
    "Chain",
    "ClientInterceptor",
    "ServerInterceptor",
    "compose",
]


class Chain:
    """An ordered, immutable composition of policies (build it with :func:`compose`)."""

    __slots__ = (
        "_aio_client",
        "_aio_server",
        "_client",
        "_server",
        "client_policies",
        "has_around",
        "has_client_finish",
        "levels",
        "needs_context",
        "policies",
        "server_policies",
        "server_run",
        "wants_response_metadata",
    )

    def __init__(self, policies: Iterable[PolicyBase | Chain]) -> None:
        flat: list[PolicyBase] = []
        for p in policies:
            if isinstance(p, Chain):
                flat.extend(p.policies)
            elif isinstance(p, (ClientPolicy, ServerPolicy)):
                flat.append(p)
            else:
                raise TypeError(
                    "compose() takes ClientPolicy/ServerPolicy objects (or Chains); "
                    f"got {type(p).__name__}"
                )
        self.policies: tuple[PolicyBase, ...] = tuple(flat)
        self.client_policies = tuple(p for p in flat if isinstance(p, ClientPolicy))
        self.server_policies = tuple(p for p in flat if isinstance(p, ServerPolicy))
        self.levels = build_levels(self.client_policies)
        self.has_around = len(self.levels) > 1
        self.wants_response_metadata = any(
            bool(getattr(p, "wants_response_metadata", False)) for p in self.client_policies
        )
        self.has_client_finish = any(
            overrides(p, ClientPolicy, "client_finish") for p in self.client_policies
        )
        self.needs_context = any(
            bool(getattr(p, "needs_context", False)) for p in self.server_policies
        )
        self.server_run = ServerRun(self.server_policies)
        self._client: ClientInterceptor | None = None
        self._aio_client: list[AioClientInterceptor] | None = None
        self._server: ServerInterceptor | None = None
        self._aio_server: AioServerInterceptor | None = None

    def __repr__(self) -> str:
        return f"Chain({', '.join(type(p).__name__ for p in self.policies)})"

    def __iter__(self) -> Iterator[PolicyBase]:
        return iter(self.policies)

    def __len__(self) -> int:
        return len(self.policies)

    # -- channel wrappers
    def wrap(self, channel: grpc.Channel) -> grpc.Channel:
        """A channel whose multicallables run this chain around ``channel``'s (sync)."""
        if isinstance(channel, grpc.aio.Channel):
            raise TypeError("wrap() takes a sync grpc.Channel; use wrap_aio() for grpc.aio")
        return WrappedChannel(channel, self)

    def wrap_aio(self, channel: grpc.aio.Channel) -> grpc.aio.Channel:
        """A ``grpc.aio.Channel`` whose multicallables run this chain around ``channel``'s."""
        if not isinstance(channel, grpc.aio.Channel):
            raise TypeError("wrap_aio() takes a grpc.aio.Channel; use wrap() for sync channels")
        return WrappedAioChannel(channel, self)

    # -- grpcio interceptor forms (each a one-element list, ready to splat or pass)
    def client_interceptors(self) -> list[ClientInterceptor]:
        """``[interceptor]``: ``grpc.intercept_channel(channel, *chain.client_interceptors())``."""
        if self._client is None:
            self._client = ClientInterceptor(self)
        return [self._client]

    def aio_client_interceptors(self) -> list[AioClientInterceptor]:
        """For ``grpc.aio.insecure_channel(target, interceptors=...)``: four objects, one per call
        shape (grpc.aio files an interceptor under one shape only), sharing this chain."""
        if self._aio_client is None:
            self._aio_client = aio_client_interceptors(self)
        return list(self._aio_client)

    def server_interceptors(self) -> list[ServerInterceptor]:
        """``[interceptor]`` for ``grpc.server(pool, interceptors=...)``."""
        if self._server is None:
            self._server = ServerInterceptor(self.server_run, self.needs_context)
        return [self._server]

    def aio_server_interceptors(self) -> list[AioServerInterceptor]:
        """``[interceptor]`` for ``grpc.aio.server(interceptors=...)``."""
        if self._aio_server is None:
            self._aio_server = AioServerInterceptor(self.server_run)
        return [self._aio_server]


def compose(*policies: PolicyBase | Chain) -> Chain:
    """Compose policies into a :class:`Chain`; the first listed is outermost."""
    return Chain(policies)


# A policy's one-policy spellings (``policy.wrap(channel)`` ...) compose it through this.
PolicyBase._compose = compose
