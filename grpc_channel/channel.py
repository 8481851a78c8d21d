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
from collections.abc import Iterable
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
from grpc_channel._engine import SyncEngine, SyncResponseStream
from grpc_channel.call_options import CallOption
from grpc_channel.dial_options import DialOption, fold_dial_options, with_insecure
from grpc_channel.dialing import open_channel
from grpc_channel.interceptors import MetadataPairs
from grpc_channel.invoke import InvokeMethodRequest, InvokeMethodResponse
from grpc_channel.v1 import appcallback_pb2, common_pb2

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


class Channel(core.ChannelBase):
    """A sync channel to an app's ``AppCallback`` service; see the module docstring.

    Build it with :func:`dial` or :meth:`Channel.local`. Thread-safe: one channel serves any number
    of threads. A context manager: leaving the block closes it.
    """

    __slots__ = ("_lock",)

    def __init__(self, target: str, *dial_options: DialOption) -> None:
        """Open a channel to ``target`` with grpc-go style ``dial_options`` (see :func:`dial`)."""
        own, rest = core.split_dial_options(dial_options)
        settings = fold_dial_options(*rest)
        grpc_channel = open_channel(target, settings)
        super().__init__(
            target, grpc_channel, core.call_plan(settings, target), own.raise_errors, SyncEngine
        )
        self._lock = threading.Lock()

    @classmethod
    def local(cls, port: int, *dial_options: DialOption) -> Channel:
        """A channel to ``127.0.0.1:port`` (Dapr's default app address), plaintext unless
        ``dial_options`` choose transport credentials (they are applied after ``with_insecure()``).
        ``port`` must be 1-65535 (``ValueError`` otherwise)."""
        port = core.check_port(port)
        return cls(f"{core.LOCAL_HOST}:{port}", with_insecure(), *dial_options)

    # -- the AppChannel protocol -------------------------------------------------------------------

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
        the channel was closed (before or during the call), UNIMPLEMENTED for a version other than
        V1. With ``with_raise_errors()`` those failures are raised as ``grpc.RpcError`` instead.

        A call refused here (closed channel, version) still runs its call options like any failed
        call: ``on_finish`` exactly once with the error, ``header(md)``/``trailer(md)`` emptied.

        Raises ``TypeError`` for a request that is not an ``InvokeMethodRequest``,
        ``MetadataError`` (a ``ValueError``) for metadata that cannot travel over gRPC and
        ``OptionError`` for a codec call option (``call_content_subtype``, ``force_codec``):
        ``OnInvoke`` always speaks protobuf. An exception from a call option's ``before`` hook
        propagates.
        """
        refusal = self._refusal(request, call_options)
        if refusal is not None:
            return refusal
        try:
            reply, headers, trailers = self._engine.call_unary(
                self._invoke_route,
                request.to_invoke_request(),
                call_options,
                metadata=core.request_pairs(request),
                capture=True,
            )
        except grpc.RpcError as error:
            return self._failure(error)
        return core.reply_response(reply, headers, trailers)

    def health_probe(self, timeout: float | None = None) -> bool:
        """Call the app's ``HealthCheck`` once: True when it answers OK, False for any failure
        (app down, an error status, no answer within ``timeout`` seconds: a finite number > 0,
        default :data:`~grpc_channel._channel_core.DEFAULT_PROBE_TIMEOUT`; ``ValueError``
        otherwise; the channel closed, before or during the probe). The probe speaks protobuf
        whatever codec is dialled, carries the app token and is traced, but takes no concurrency
        slot."""
        seconds = self._probe_seconds(timeout)
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
        while wait.waiting:
            pause = wait.after(self._probe(wait.attempt(self._closed)), self._closed)
            if pause > 0:
                time.sleep(pause)

    def close(self) -> None:
        """Close the channel (idempotent). Calls in flight end with CANCELLED."""
        with self._lock:
            if not self._mark_closed():
                return
        self._grpc.close()

    # -- pub/sub ----------------------------------------------------------------------------------

    def list_topic_subscriptions(
        self, *call_options: CallOption
    ) -> list[appcallback_pb2.TopicSubscription]:
        """The app's pub/sub subscriptions (``ListTopicSubscriptions``), as the
        ``TopicSubscription`` messages it returned; an empty list when the app answers
        UNIMPLEMENTED (it serves no pub/sub). Same token, deadline (``timeout(s)``) and tracing
        rules as :meth:`invoke_method`; takes no concurrency slot (a control call). Other failures
        raise ``grpc.RpcError`` (CANCELLED on a closed channel)."""
        try:
            reply = self._health_engine.call_unary(self._list_route, core.EMPTY, call_options)
        except grpc.RpcError as error:
            if error.code() is not grpc.StatusCode.UNIMPLEMENTED:
                raise
            reply = None
        return core.subscriptions_of(reply)

    def on_topic_event(
        self,
        event: appcallback_pb2.TopicEventRequest,
        *call_options: CallOption,
        timeout: float | None = None,
        metadata: MetadataPairs | None = None,
    ) -> appcallback_pb2.TopicEventResponse:
        """Deliver one pub/sub event to the app (``OnTopicEvent``); returns its
        ``TopicEventResponse`` (``status`` SUCCESS, RETRY or DROP). Same token, deadline and
        tracing rules as :meth:`invoke_method`, and it takes a concurrency slot like an invoke.
        Failures raise ``grpc.RpcError`` whatever ``with_raise_errors`` says (the deliverer decides
        on the code: UNIMPLEMENTED drops, others retry); ``TypeError`` for an event that is not a
        ``TopicEventRequest``. ``timeout`` (seconds) and ``metadata`` (extra pairs) are grpcio's
        per-call keywords, as on :meth:`invoke`: a caller holding them as values (the pub/sub
        runtime) passes them without building call options; call options win over them."""
        response: appcallback_pb2.TopicEventResponse = self._engine.call_unary(
            self._topic_route,
            core.check_topic_event(event),
            call_options,
            timeout=timeout,
            metadata=metadata,
        )
        return response

    # -- the generic path --------------------------------------------------------------------------

    def invoke(
        self,
        method: str,
        payload: bytes | Message,
        *call_options: CallOption,
        response_type: type[Message] | None = None,
        timeout: float | None = None,
        metadata: MetadataPairs | None = None,
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
        ``timeout`` (seconds) and ``metadata`` (extra pairs) are grpcio's per-call keywords,
        for callers that hold them as values (a proxy); call options win over them.
        """
        route, request, options = self._generic(method, payload, call_options, response_type)
        return self._engine.call_unary(route, request, options, timeout=timeout, metadata=metadata)

    def stream(
        self,
        method: str,
        requests: Iterable[bytes],
        *call_options: CallOption,
        timeout: float | None = None,
        metadata: MetadataPairs | None = None,
    ) -> SyncResponseStream:
        """Call any method by path as a stream-stream call on raw bytes: the raw streaming path a
        proxy needs (the wire does not tell the four call shapes apart, so a unary,
        server-streaming or client-streaming method is called this way too).

        ``requests`` is iterated by grpcio's sending thread; each item must be bytes (the raw
        codec; another item fails the call). Returns the response iterator: iterate it for the
        response bytes; ``initial_metadata()``, ``trailing_metadata()``, ``code()``,
        ``details()`` and ``cancel()`` are the grpcio call's. ``timeout`` (seconds, None: the
        call options' or none) and ``metadata`` (extra pairs) are grpcio's keywords; call options
        win over them.

        Goes through the channel's policies and call options exactly as :meth:`invoke` does:
        the ``with_max_concurrency`` slot is taken before the call starts (waiting no longer
        than the deadline) and held until the stream ends, fails, is cancelled or is dropped
        unread; the app token, tracing, and the token rule (only the channel's own
        ``dapr-api-token`` is sent) apply; hooks run once when the stream ends. A bad method
        path raises ``ValueError`` at once; a refused or unstartable call (closed channel:
        CANCELLED) raises ``grpc.RpcError``. Routes are cached per path, at most 1024.
        """
        route = self._stream_route(method)
        stream: SyncResponseStream = self._engine.call_stream(
            route, requests, self._stream_options(call_options), timeout=timeout, metadata=metadata
        )
        return stream

    def _probe(self, seconds: float) -> grpc.RpcError | None:
        """One readiness attempt: the error it failed with, or None when the app answered OK."""
        try:
            self._health(seconds, ready_wait=True)
        except grpc.RpcError as error:
            return error
        return None

    def _health(self, seconds: float, *, ready_wait: bool) -> None:
        options = self._health_options(seconds, ready_wait)
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


def dial(target: str, *dial_options: DialOption) -> Channel:
    """Open a sync :class:`Channel` to ``target`` (``"host:port"`` or any grpcio target).

    ``dial_options`` are grpc-go style: pass ``with_insecure()`` or
    ``with_transport_credentials(...)`` (one is required, as in grpc-go; :meth:`Channel.local`
    defaults to plaintext), and any of ``with_max_concurrency(n)``, ``with_app_token(token)``,
    ``with_tracing(spec)``, ``with_default_call_options(...)``, ``with_block(timeout)`` ... plus
    :func:`with_raise_errors`. Bad options raise ``OptionError`` naming the option.
    """
    return Channel(target, *dial_options)
