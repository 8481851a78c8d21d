"""The app-side SDK: :class:`App` collects an application's handlers and serves Dapr's
``AppCallback`` and ``AppCallbackHealthCheck`` services with them, on a sync ``grpc.server`` or on
``grpc.aio``. It is this toolkit's counterpart of the dapr SDK's ``dapr.ext.grpc.App``, with an
asyncio form that SDK lacks::

    app = App()

    @app.subscribe("pubsub", "orders", dead_letter_topic="orders-dead")
    def on_order(event: TopicEvent) -> TopicEventStatus | None:
        ...                                   # None: SUCCESS; raising: RETRY

    @app.subscribe("pubsub", "orders", match='event.type == "big"', route="/orders/big")
    async def on_big_order(event: TopicEvent) -> TopicEventStatus:
        return TopicEventStatus.DROP

    @app.method("hello")
    def hello(request: MethodRequest) -> dict[str, str]:
        return {"hello": request.text()}     # application/json

    app.run(50001)                            # or: await app.serve_async(50001)

Handlers may be plain functions or ``async def``, on either server: under ``grpc.aio`` plain
handlers run in a worker thread (``asyncio.to_thread``) so they never block the loop; under the
sync server ``async def`` handlers run on one private event-loop thread per server, which the
gRPC worker waits on. (Refusing them instead would tie the handlers to a server choice that is
made later, at start.) A handler ends its call with a status of its own by raising
:class:`~grpc_channel.app.errors.AbortCall`.

Answers:

- ``OnInvoke``: see :mod:`grpc_channel.app.request` for what a method handler returns. An exception
  answers INTERNAL with the exception's type in the details (its traceback is logged, never sent);
  an unregistered method answers UNIMPLEMENTED naming it.
- ``OnTopicEvent``: routed by ``(pubsub_name, topic, path)``
  (:mod:`grpc_channel.app.subscriptions`). A handler's :class:`TopicEventStatus` (``None``:
  SUCCESS) is the answer; an exception, or a return value of another type, answers RETRY and is
  logged with its traceback. An unknown route answers UNIMPLEMENTED naming it, as the dapr SDK's
  App does: Dapr drops such an event (it retries on every other error code, and no handler here
  would ever take it).
- ``ListTopicSubscriptions``: every subscription, with its metadata, rules, default route and dead
  letter topic.
- ``HealthCheck``: healthy, unless ``@app.health_check`` registered a handler: then ``False``
  answers UNAVAILABLE, an exception UNAVAILABLE naming its type, anything else healthy.

App token: ``App(app_token=...)``; ``None`` (the default) reads the ``APP_API_TOKEN`` environment
variable when the App is created; ``""`` requires none even when that variable is set. With a
token every call, health checks included, must carry exactly one ``dapr-api-token`` metadata value
equal to it (compared in constant time), else UNAUTHENTICATED. The token is never logged, never
shown in a ``repr``, and never handed to a handler: the ``metadata`` of a :class:`TopicEvent` or
:class:`MethodRequest` leaves ``dapr-api-token`` out, so a handler that forwards its incoming
metadata cannot pass the token on (Dapr #7344).

The servers refuse to share a port (``SO_REUSEPORT`` off): starting on a port another server
listens on raises ``OSError`` rather than splitting that port's calls with it.

Serving listens on ``127.0.0.1`` unless ``host`` says otherwise, plaintext. One server at a time per
App; handlers are registered before it starts (registering on a serving App raises
:class:`~grpc_channel.app.errors.RegistrationError`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from grpc_channel.app._aio_server import AioServer
from grpc_channel.app._dispatch import Dispatcher, HealthHandler, MethodHandler
from grpc_channel.app._serving import DEFAULT_HOST, check_port
from grpc_channel.app._sync_server import SyncServer
from grpc_channel.app.errors import RegistrationError
from grpc_channel.app.subscriptions import Subscriptions

__all__ = ["APP_TOKEN_ENV", "DEFAULT_MAX_WORKERS", "App"]

APP_TOKEN_ENV = "APP_API_TOKEN"
"""The environment variable an :class:`App` reads its token from when none is given."""
DEFAULT_MAX_WORKERS = 10
"""Worker threads of the sync server: the number of calls it runs at once."""

_F = TypeVar("_F", bound=Callable[..., Any])


class App:
    """An application's handlers, served as Dapr's AppCallback services (module docstring)."""

    def __init__(self, app_token: str | None = None) -> None:
        if app_token is None:
            app_token = os.environ.get(APP_TOKEN_ENV, "")
        elif not isinstance(app_token, str):
            raise TypeError(f"app_token must be str or None, got {type(app_token).__name__}")
        self._token = app_token or None
        self._subscriptions = Subscriptions()
        self._methods: dict[str, MethodHandler] = {}
        self._health: HealthHandler | None = None
        self._sync: SyncServer | None = None
        self._aio: AioServer | None = None
        self._port: int | None = None

    # -- registration ------------------------------------------------------------------------------

    @property
    def token_required(self) -> bool:
        """True when calls must carry the app token."""
        return self._token is not None

    @property
    def port(self) -> int | None:
        """The port being served, ``None`` when not serving."""
        return self._port

    def _check_not_serving(self) -> None:
        if self._port is not None:
            raise RegistrationError(
                f"the app is serving on port {self._port}; register handlers before it starts"
            )

    def subscribe(
        self,
        pubsub: str,
        topic: str,
        *,
        metadata: Mapping[str, str] | None = None,
        dead_letter_topic: str | None = None,
        match: str | None = None,
        route: str | None = None,
        priority: int | None = None,
    ) -> Callable[[_F], _F]:
        """Decorator: the handler of events of ``topic`` on the pub/sub component ``pubsub``.

        With ``match`` (a CEL expression Dapr evaluates) and ``route`` it handles the events that
        rule routes; without ``match`` it is the topic's default handler (``route``, if given,
        becoming ``routes.default``). ``priority`` orders rules (lower first, default 0, then
        declaration order). See :mod:`grpc_channel.app.subscriptions` for the rules;
        :class:`RegistrationError` / :class:`DuplicateRouteError` for bad or taken routes. The
        function is returned unchanged.
        """

        def register(handler: _F) -> _F:
            self._check_not_serving()
            self._subscriptions.add(
                pubsub,
                topic,
                handler,
                metadata=metadata,
                dead_letter_topic=dead_letter_topic,
                match=match,
                route=route,
                priority=priority,
            )
            return handler

        return register

    def method(self, name: str) -> Callable[[_F], _F]:
        """Decorator: the ``OnInvoke`` handler of method ``name`` (a non-empty str, one handler per
        name; :class:`RegistrationError` otherwise). The function is returned unchanged."""
        if not isinstance(name, str) or not name:
            hint = " (write @app.method('name'))" if callable(name) else ""
            raise RegistrationError(f"method name must be a non-empty str, got {name!r}{hint}")

        def register(handler: _F) -> _F:
            self._check_not_serving()
            if not callable(handler):
                raise RegistrationError(f"a method handler must be callable, got {handler!r}")
            if name in self._methods:
                raise RegistrationError(f"method {name!r} already has a handler")
            self._methods[name] = handler
            return handler

        return register

    def health_check(self, handler: _F) -> _F:
        """Decorator: the health handler, called without arguments (at most one). Returning
        ``False`` reports unhealthy; anything else healthy."""
        self._check_not_serving()
        if not callable(handler):
            raise RegistrationError(f"a health handler must be callable, got {handler!r}")
        if self._health is not None:
            raise RegistrationError("the app already has a health handler")
        self._health = handler
        return handler

    def _dispatcher(self) -> Dispatcher:
        return Dispatcher(self._subscriptions, self._methods, self._health, self._token)

    def _check_not_started(self) -> None:
        if self._port is not None:
            raise RuntimeError(f"the app is already serving on port {self._port}; stop it first")

    # -- sync serving ------------------------------------------------------------------------------

    def start(
        self, port: int = 0, *, host: str = DEFAULT_HOST, max_workers: int = DEFAULT_MAX_WORKERS
    ) -> int:
        """Serve on a sync ``grpc.server`` in the background; return the bound port (``port=0``
        picks a free one). ``OSError`` when it cannot listen, ``RuntimeError`` when already
        serving, ``ValueError`` for a bad port, host or ``max_workers`` (an int >= 1)."""
        self._check_not_started()
        port = check_port(port)
        if not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1:
            raise ValueError(f"max_workers must be an int >= 1, got {max_workers!r}")
        server = SyncServer(self._dispatcher())
        self._port = server.start(host, port, max_workers)
        self._sync = server
        return self._port

    def stop(self, grace: float | None = None) -> None:
        """Stop the sync server: new calls are refused at once, calls in flight get ``grace``
        seconds (``None``: they are cancelled now). Idempotent."""
        server, self._sync = self._sync, None
        if server is not None:
            try:
                server.stop(grace)
            finally:
                self._port = None

    def run(
        self, port: int, *, host: str = DEFAULT_HOST, max_workers: int = DEFAULT_MAX_WORKERS
    ) -> None:
        """Serve on a sync ``grpc.server`` until it is stopped or interrupted (Ctrl-C)."""
        self.start(port, host=host, max_workers=max_workers)
        server = self._sync
        try:
            if server is not None:
                server.wait()
        finally:
            self.stop()

    # -- asyncio serving ---------------------------------------------------------------------------

    async def start_async(self, port: int = 0, *, host: str = DEFAULT_HOST) -> int:
        """Serve on a ``grpc.aio`` server on the running loop; return the bound port. Errors as
        :meth:`start`."""
        self._check_not_started()
        port = check_port(port)
        server = AioServer(self._dispatcher())
        self._port = await server.start(host, port)
        self._aio = server
        return self._port

    async def stop_async(self, grace: float | None = None) -> None:
        """Stop the asyncio server (``grace`` as in :meth:`stop`). Idempotent."""
        server, self._aio = self._aio, None
        if server is not None:
            try:
                await server.stop(grace)
            finally:
                self._port = None

    async def serve_async(self, port: int, *, host: str = DEFAULT_HOST) -> None:
        """Serve on ``grpc.aio`` until the server stops or this task is cancelled (then the server
        is stopped, calls in flight cancelled)."""
        await self.start_async(port, host=host)
        server = self._aio
        try:
            if server is not None:
                await server.wait()
        finally:
            with contextlib.suppress(Exception):
                await self.stop_async()

    def __repr__(self) -> str:
        serving = f"serving on port {self._port}" if self._port is not None else "not serving"
        return (
            f"App({len(self._subscriptions)} topics, {len(self._methods)} methods,"
            f" token {'required' if self._token else 'not required'}, {serving})"
        )
