"""The sync app channel: :func:`dial`, :class:`Channel` and the :class:`AppChannel` protocol.

A :class:`Channel` invokes an application's ``AppCallback`` service the way Dapr's gRPC app channel
does, with Dapr's gaps closed::

    from grpc_channel.channel import Channel
    from grpc_channel.invoke import InvokeMethodRequest
    from grpc_channel.dial_options import with_app_token, with_max_concurrency

    with Channel.local(50001, with_max_concurrency(8), with_app_token("s3cret")) as app:
        app.wait_until_ready(10)
        response = app.invoke_method(InvokeMethodRequest("hello").with_data(b"hi", "text/plain"))
        print(response.status.code, response.data, response.headers, response.trailers)

``invoke_method`` (see its docstring for the details):

- refuses any API version but V1 with UNIMPLEMENTED ``"Unsupported spec version: N"``;
- converts the request's internal metadata to gRPC metadata (HTTP-header conversion on), adds the
  app token (``with_app_token(token)``; without that option a non-empty ``APP_API_TOKEN``, as in
  Dapr) as ``dapr-api-token`` and sends the caller's deadline (``timeout(s)`` call option) to the
  app. The channel never forwards a ``dapr-api-token`` it did not set itself: one in the request's
  metadata, the context's outgoing metadata (``grpc_channel.metadata.outgoing_metadata``), the
  default or per-call ``call_metadata(...)`` is dropped, so the app only ever sees the channel's
  token, or none (a service that copies its incoming metadata to the outgoing context cannot
  forward its caller's token; Dapr #7344). Per-RPC credentials, the caller's explicit
  credentials, are not filtered;
- takes a slot of ``with_max_concurrency(n)`` first (``n <= 0``: unlimited), waiting at most until
  the call's deadline, and releases it on every path; :attr:`Channel.concurrency_limit` shows the
  limit, the calls in flight and the callers waiting. HealthCheck probes take no slot;
- captures the response headers and trailers into the response, and returns app errors and
  transport faults as responses with their code, message and ``google.rpc.Status`` details, unless
  the channel was dialled ``with_raise_errors()``;
- with ``with_tracing(spec)`` each invoke is one OpenTelemetry CLIENT span and the W3C trace context
  travels to the app;
- speaks protobuf to ``OnInvoke`` and ``HealthCheck`` whatever codec the channel is dialled with
  (``with_codec`` and the codec call options apply to the generic :meth:`Channel.invoke` with
  message payloads; on ``invoke_method`` a codec call option raises ``OptionError``).

After :meth:`Channel.close` (also from another thread, while calls run) nothing raises grpcio's
``ValueError``: ``invoke_method`` answers CANCELLED, ``invoke`` raises a CANCELLED
``grpc.RpcError``, ``health_probe`` answers False and ``wait_until_ready`` raises
:class:`AppNotReadyError` at once.

Cancellation of a sync call: Python cannot interrupt a thread, so a sync ``invoke_method`` ends
when the app answers, at its deadline (DEADLINE_EXCEEDED), or when the channel is closed from
another thread (every call in flight then ends with CANCELLED, and the app sees its call cancelled).
For per-call cancellation use :class:`~grpc_channel._async_channel.AsyncChannel`, where cancelling
the awaiting task cancels the RPC.
"""

from __future__ import annotations

import threading
import time
from time import monotonic
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.message import Message

from grpc_channel import _channel_core as core
from grpc_channel._channel_core import (
    AppChannel,
    AppNotReadyError,
    AsyncAppChannel,
    RaiseErrorsDialOption,
    SyncAppChannel,
    with_raise_errors,
)
from grpc_channel._engine import Route, SyncEngine
from grpc_channel.call_options import CallOption, header, timeout, trailer, wait_for_ready
from grpc_channel.dial_options import DialOption, fold_dial_options, with_insecure
from grpc_channel.dialing import open_channel
from grpc_channel.interceptors import (
    BoundedCache,
    ConcurrencyLimit,
    MetadataPairs,
    ended_call_metadata,
    outcome_code,
    time_left,
)
from grpc_channel.invoke import InvokeMethodRequest, InvokeMethodResponse
from grpc_channel.metadata import Metadata
from grpc_channel.v1 import common_pb2

__all__ = [
    "AppChannel",
    "AppNotReadyError",
    "AsyncAppChannel",
    "Channel",
    "RaiseErrorsDialOption",
    "SyncAppChannel",
    "dial",
    "with_raise_errors",
]

_OK = grpc.StatusCode.OK
_InvokeResponse = common_pb2.InvokeResponse


class Channel:
    """A sync channel to an app's ``AppCallback`` service; see the module docstring.

    Build it with :func:`dial` or :meth:`Channel.local`. Thread-safe: one channel serves any number
    of threads. A context manager: leaving the block closes it.
    """

    __slots__ = (
        "_closed",
        "_direct",
        "_engine",
        "_fast",
        "_grpc",
        "_health_engine",
        "_health_route",
        "_invoke_mc",
        "_invoke_route",
        "_limit",
        "_lock",
        "_plan",
        "_raise",
        "_raw_routes",
        "_target",
    )

    def __init__(self, target: str, *dial_options: DialOption) -> None:
        """Open a channel to ``target`` with grpc-go style ``dial_options`` (see :func:`dial`)."""
        own, rest = core.split_dial_options(dial_options)
        settings = fold_dial_options(*rest)
        self._grpc: grpc.Channel = open_channel(target, settings)
        self._target = target
        self._raise = own.raise_errors
        self._plan = core.call_plan(settings, target)
        self._engine = SyncEngine(self._grpc, self._plan)
        # OnInvoke always speaks protobuf (the AppCallback contract), whatever codec is dialled.
        self._invoke_mc = self._grpc.unary_unary(
            core.ON_INVOKE_PATH, core.serialize_invoke_request, core.parse_invoke_response
        )
        self._invoke_route = core.invoke_route(self._invoke_mc)
        # Calls without call options skip the engine's per-call record when nothing at dial level
        # needs one (no hooks, credentials or size limits): the hot path.
        self._fast = self._plan.plain
        # On that path, a limit and a token (the usual policies) run inline, without the chain.
        self._direct = core.direct_invoke(self._grpc) if self._fast else None
        self._limit, health = core.health_channel(self._grpc)
        self._health_engine = (
            SyncEngine(health, self._plan) if health is not self._grpc else self._engine
        )
        # HealthCheck speaks protobuf too, whatever codec is dialled.
        self._health_route = core.health_route(
            health.unary_unary(
                core.HEALTH_CHECK_PATH, core.serialize_empty, core.parse_health_response
            )
        )
        # Bounded: a proxy's callers choose the paths (hits read the plain dict, .data).
        self._raw_routes: BoundedCache[str, Route] = BoundedCache()
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def local(cls, port: int, *dial_options: DialOption) -> Channel:
        """A channel to ``127.0.0.1:port`` (Dapr's default app address), plaintext unless
        ``dial_options`` choose transport credentials (they are applied after ``with_insecure()``).
        ``port`` must be 1-65535 (``ValueError`` otherwise)."""
        port = core.check_port(port)
        return cls(f"{core.LOCAL_HOST}:{port}", with_insecure(), *dial_options)

    # -- the AppChannel protocol -------------------------------------------------------------------

    @property
    def base_address(self) -> str:
        """The dialled target, e.g. ``"127.0.0.1:50001"``."""
        return self._target

    def invoke_method(
        self, request: InvokeMethodRequest, *call_options: CallOption
    ) -> InvokeMethodResponse:
        """Call the app's ``OnInvoke`` with ``request``; return its response.

        ``call_options`` are the usual call options (``timeout(s)``, ``metadata(...)``,
        ``header(md)``, ``on_finish(cb)`` ...). Order: version check (no slot taken, nothing sent),
        then the call through the channel's policies (tracing span, concurrency slot, app token),
        then the response. The only ``dapr-api-token`` the app receives is the channel's own: one
        from the request, the context's outgoing metadata or ``call_metadata(...)`` is dropped.

        Returns an OK response with the app's data, content type, headers and trailers, or, when the
        call failed, a response with the gRPC code, message, headers, trailers and the
        ``google.rpc.Status`` details: an app error, UNAVAILABLE when the app cannot be reached,
        DEADLINE_EXCEEDED when the deadline passed (also while waiting for a slot), CANCELLED when
        the channel was closed meanwhile, UNIMPLEMENTED for a version other than V1. With
        ``with_raise_errors()`` those failures are raised as ``grpc.RpcError`` instead.

        A call refused here (closed channel, version) still runs its call options like any failed
        call: ``on_finish`` exactly once with the error, ``header(md)``/``trailer(md)`` emptied.

        Raises ``TypeError`` for a request that is not an ``InvokeMethodRequest``,
        ``MetadataError`` (a ``ValueError``) for metadata that cannot travel over gRPC and
        ``OptionError`` for a codec call option (``call_content_subtype``, ``force_codec``):
        ``OnInvoke`` always speaks protobuf. An exception from a call option's ``before`` hook
        propagates.
        """
        core.check_request(request)
        if self._closed:
            return core.refused(self._plan, call_options, core.closed_error(), self._raise)
        refusal = core.version_error(request)
        if refusal is not None:
            return core.refused(self._plan, call_options, refusal, self._raise)
        try:
            # The fast path: no call options, or just timeout(s) (see core.timeout_only).
            if self._fast and (not call_options or core.timeout_only(call_options)):
                plan = self._plan
                timeout = core.fast_timeout(call_options, plan.template.timeout)
                direct = self._direct
                if direct is not None:
                    reply, call = self._call_direct(
                        direct,
                        request.to_invoke_request(),
                        timeout,
                        direct.metadata(request, plan.template.metadata),
                    )
                else:
                    reply, call = self._invoke_mc.with_call(
                        request.to_invoke_request(),
                        timeout=timeout,
                        metadata=core.call_pairs(request, plan.template.metadata) or None,
                        **plan.fast_kwargs,
                    )
                return core.reply_response(reply, *ended_call_metadata(call))
            headers, trailers = Metadata(), Metadata()
            reply = self._engine.call_unary(
                self._invoke_route,
                request.to_invoke_request(),
                (*call_options, header(headers), trailer(trailers), core.TOKEN_GUARD),
                metadata=core.request_pairs(request),
            )
        except grpc.RpcError as error:
            return self._failure(error)
        except ValueError as exc:
            # grpcio refuses calls on a closed channel (also calls that waited for a slot) with a
            # ValueError: CANCELLED. (The engine did that already for the calls it ran.)
            closed = core.closed_failure(exc) if self._closed else None
            if closed is None:
                raise
            return self._failure(closed)
        response = core.reply_response(reply, None, None)
        response.headers, response.trailers = headers, trailers
        return response

    def health_probe(self, timeout: float | None = None) -> bool:
        """Call the app's ``HealthCheck`` once: True when it answers OK, False for any failure
        (app down, an error status, no answer within ``timeout`` seconds: a finite number > 0,
        default :data:`~grpc_channel._channel_core.DEFAULT_PROBE_TIMEOUT`; ``ValueError``
        otherwise; the channel closed, before or during the probe). The probe speaks protobuf
        whatever codec is dialled, carries the app token and is traced, but takes no concurrency
        slot."""
        seconds = (
            core.DEFAULT_PROBE_TIMEOUT
            if timeout is None
            else core.check_timeout("timeout", timeout, allow_zero=False)
        )
        if self._closed:
            return False
        try:
            self._health(seconds, ready_wait=False)
        except grpc.RpcError:
            return False
        return True

    def wait_until_ready(self, timeout: float) -> None:
        """Poll the app's ``HealthCheck`` until it answers (an app may start after the channel).

        Returns once the app answers OK or UNIMPLEMENTED (a server without a health service is up).
        Each attempt waits for the connection (``wait_for_ready``), so an app that comes up is
        found at grpc's next reconnect attempt. Raises :class:`AppNotReadyError` (a
        ``TimeoutError``) naming the target, the timeout and the last outcome when ``timeout``
        seconds pass first; ``ValueError`` for a negative or non-finite ``timeout``.

        On a closed channel (closed before the call or while it waits) it raises
        :class:`AppNotReadyError` at once, saying the channel is closed, rather than waiting out
        ``timeout``: the app can never become ready through it. Its ``__cause__`` is the CANCELLED
        ``grpc.RpcError`` calls on the closed channel get.
        """
        wait = core.ReadyWait(self._target, timeout)
        while True:
            seconds = wait.attempt(self._closed)
            try:
                self._health(seconds, ready_wait=True)
                return
            except grpc.RpcError as exc:
                pause = wait.failed(exc, self._closed)
                if pause is None:
                    return
            if pause > 0:
                time.sleep(pause)

    def close(self) -> None:
        """Close the channel (idempotent). Calls in flight end with CANCELLED."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # Before grpcio closes: the engines then turn its refusals into CANCELLED.
            self._engine.closed = self._health_engine.closed = True
        self._grpc.close()

    @property
    def concurrency_limit(self) -> ConcurrencyLimit | None:
        """The ``with_max_concurrency`` limiter (``None`` when unlimited): its ``limit``,
        ``in_flight`` (calls holding a slot) and ``queued`` (callers waiting for one). Invokes and
        the generic ``invoke`` take slots; HealthCheck probes do not."""
        return self._limit

    # -- the generic path --------------------------------------------------------------------------

    def invoke(
        self,
        method: str,
        payload: bytes | Message,
        *call_options: CallOption,
        response_type: type[Message] | None = None,
    ) -> Any:
        """Call any unary method by path (``"/pkg.Service/Method"``): the raw path a proxy needs.

        - ``payload`` bytes (or bytearray / memoryview): sent as they are; the result is the raw
          response bytes.
        - ``payload`` a message: encoded with the channel's codec (``with_codec``, default protobuf;
          ``force_codec(...)`` per call) and decoded into ``response_type``, which is then required.

        Goes through the channel's policies (tracing, concurrency limit, app token) and call
        options (``header(md)`` / ``trailer(md)`` capture the metadata). Failures raise
        ``grpc.RpcError``, whatever ``with_raise_errors`` says: a proxy forwards the status; on a
        closed channel, CANCELLED (``on_finish`` sees it too). The token rule of
        :meth:`invoke_method` holds: only the channel's own ``dapr-api-token`` is sent.
        """
        core.check_method_path(method)
        if isinstance(payload, bytes | bytearray | memoryview):
            if response_type is not None:
                raise TypeError("invoke: response_type is for message payloads; bytes come back")
            if self._closed:
                raise core.refuse(self._plan, method, call_options, core.closed_error())
            route = self._raw_routes.data.get(method)
            if route is None:
                route = self._raw_route(method)
            return self._engine.call_unary(route, bytes(payload), core.raw_options(call_options))
        if not isinstance(payload, Message):
            raise TypeError(
                f"invoke: payload must be bytes or a protobuf message, got {type(payload).__name__}"
            )
        if response_type is None:
            raise TypeError("invoke: pass response_type= (a message class) for a message payload")
        if self._closed:
            raise core.refuse(self._plan, method, call_options, core.closed_error())
        return self._engine.unary_unary(
            method, payload, response_type, *core.invoke_options(self._plan, call_options)
        )

    def _raw_route(self, method: str) -> Route:
        route = core.raw_route(method, self._grpc.unary_unary(method, None, None))
        self._raw_routes[method] = route
        return route

    # -- helpers -------------------------------------------------------------------------------

    def _call_direct(
        self,
        direct: core.DirectInvoke,
        message: common_pb2.InvokeRequest,
        timeout: float | None,
        metadata: MetadataPairs,
    ) -> tuple[common_pb2.InvokeResponse, Any]:
        """``OnInvoke`` through the channel's limit run inline (see
        :func:`~grpc_channel._channel_core.direct_invoke`), ``metadata`` already carrying its
        token: the chain's outcome, without it."""
        call = direct.mc.with_call
        kwargs = self._plan.fast_kwargs
        limit = direct.limit
        if limit is None:
            return call(message, timeout=timeout, metadata=metadata or None, **kwargs)  # type: ignore[no-any-return]
        started = monotonic()
        granted = limit.take(None if timeout is None else started + timeout)
        try:
            if granted is not None:  # it queued: the round trip starts now, with less time left
                deadline = None if timeout is None else started + timeout
                started = granted
                timeout = time_left(deadline)
            result = call(message, timeout=timeout, metadata=metadata or None, **kwargs)
        except BaseException as exc:
            limit.give_back(outcome_code(exc), started)
            raise
        limit.give_back(_OK, started)
        return result  # type: ignore[no-any-return]

    def _failure(self, error: grpc.RpcError) -> InvokeMethodResponse:
        if self._raise:
            raise error
        return core.error_response(error)

    def _health(self, seconds: float, *, ready_wait: bool) -> None:
        options: tuple[CallOption, ...] = (
            (timeout(seconds), wait_for_ready(), core.TOKEN_GUARD)
            if ready_wait
            else (timeout(seconds), core.TOKEN_GUARD)
        )
        self._health_engine.call_unary(self._health_route, core.EMPTY, options)

    def __enter__(self) -> Channel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"Channel({self._target!r}, {state})"


def dial(target: str, *dial_options: DialOption) -> Channel:
    """Open a sync :class:`Channel` to ``target`` (``"host:port"`` or any grpcio target).

    ``dial_options`` are grpc-go style: pass ``with_insecure()`` or
    ``with_transport_credentials(...)`` (one is required, as in grpc-go; :meth:`Channel.local`
    defaults to plaintext), and any of ``with_max_concurrency(n)``, ``with_app_token(token)``,
    ``with_tracing(spec)``, ``with_default_call_options(...)``, ``with_block(timeout)`` ... plus
    :func:`with_raise_errors`. Bad options raise ``OptionError`` naming the option.
    """
    return Channel(target, *dial_options)
