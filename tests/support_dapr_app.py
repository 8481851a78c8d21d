"""A real Dapr app for channel tests: the ``dapr`` SDK's ``dapr.ext.grpc.App`` in a subprocess.

None of us wrote this peer, so tests against it show that the channel speaks the AppCallback wire
contract the way the Dapr SDK expects. The app listens on 127.0.0.1 only and registers these
``@app.method`` handlers (their data is UTF-8 text or JSON):

- ``echo``: returns the request data and content type; sends the response header
  ``x-app-header: dapr`` through the SDK's own ``InvokeMethodResponse(headers=...)`` and the trailer
  ``x-app-trailer: dapr`` through the gRPC context.
- ``fail``: aborts with INVALID_ARGUMENT, message ``"name is required"`` and a
  ``google.rpc.BadRequest`` detail with one field violation (``name`` / ``must not be empty``).
- ``sleep``: sleeps for the number of seconds in its data (a float), returning early when the caller
  has gone away (cancellation or deadline); answers ``b"slept"``.
- ``deadline``: answers ``{"time_remaining": float | null}``, what ``context.time_remaining()`` saw.
- ``metadata``: answers the invocation metadata it received as ``{key: [values...]}`` (``-bin``
  values base64); the ``dapr-api-token`` values are reported like any other key.
- ``stats``: answers ``{"in_flight", "max_in_flight", "calls", "cancelled"}``: OnInvoke calls
  running now (``stats`` and ``reset`` excluded), the most ever running at once, calls seen, and
  ``sleep`` calls that saw their caller go away. ``reset`` zeroes ``max_in_flight``, ``calls`` and
  ``cancelled``.

The SDK hands a handler only the request, never the gRPC context; ``App(**kwargs)`` forwards its
keyword arguments to ``grpc.server``, so we pass a server interceptor that keeps the current call's
context in a thread-local for the handlers that need trailers, aborts and deadlines. The SDK's own
servicer still routes and answers every call. Health checks are on (``register_health_check``).

Start one per test module (``DaprApp().start()`` or ``with running_dapr_app() as app``); ``start``
returns once the port answers ``HealthCheck``; ``stop`` terminates the process and waits for it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import empty_pb2
from support_harness import bad_request_detail, free_port

from grpc_channel.appcallback import HEALTH_CHECK, ON_INVOKE
from grpc_channel.v1 import appcallback_pb2, common_pb2

__all__ = ["DaprApp", "app_call", "remaining", "running_dapr_app"]

_HOST = "127.0.0.1"
_STARTUP_TIMEOUT = 30.0


def remaining(context: grpc.ServicerContext) -> float | None:
    """Seconds left before the call's deadline, ``None`` without one (grpcio then reports a huge
    number)."""
    left = context.time_remaining()
    return None if left is None or left > 1e6 else left


def app_call(target: str, method: str, data: bytes = b"", timeout: float = 10.0) -> bytes:
    """Invoke ``method`` on an AppCallback app with a bare grpcio channel; return the response data.

    Independent of the channel under test, so tests read the app's counters through it.
    """
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            ON_INVOKE,
            request_serializer=common_pb2.InvokeRequest.SerializeToString,
            response_deserializer=common_pb2.InvokeResponse.FromString,
        )
        request = common_pb2.InvokeRequest(method=method, content_type="text/plain")
        request.data.value = data
        response: common_pb2.InvokeResponse = call(request, timeout=timeout)
        return response.data.value


def _health_ok(target: str, timeout: float) -> bool:
    with grpc.insecure_channel(target) as channel:
        probe = channel.unary_unary(
            HEALTH_CHECK,
            request_serializer=empty_pb2.Empty.SerializeToString,
            response_deserializer=appcallback_pb2.HealthCheckResponse.FromString,
        )
        try:
            probe(empty_pb2.Empty(), timeout=timeout, wait_for_ready=True)
        except grpc.RpcError:
            return False
        return True


class DaprApp:
    """Handle on one ``dapr.ext.grpc.App`` subprocess listening on ``127.0.0.1:port``.

    ``port`` defaults to a free port; ``start_delay`` (seconds) makes the process wait before it
    binds, for tests of a channel dialled before its app starts (``start(wait=False)`` then).
    """

    name = "dapr"

    def __init__(self, port: int | None = None, *, start_delay: float = 0.0) -> None:
        self.port = port if port is not None else free_port()
        self.start_delay = start_delay
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"{_HOST}:{self.port}"

    def start(self, *, wait: bool = True) -> DaprApp:
        """Launch the subprocess; with ``wait`` return only once ``HealthCheck`` answers.

        Raises:
            RuntimeError: the process exited or did not answer within 30 s (its stderr is included).
        """
        env = dict(os.environ)
        env.pop("APP_API_TOKEN", None)
        # The project root, so the app process imports grpc_channel without an installed package.
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), str(self.port), str(self.start_delay)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = _STARTUP_TIMEOUT) -> None:
        proc = self._proc
        if proc is None:
            raise RuntimeError("DaprApp.wait_ready() called before start()")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"dapr app exited with {proc.returncode}: {err}")
            if _health_ok(self.target, timeout=0.5):
                return
        self.stop()
        raise RuntimeError(f"dapr app on {self.target} did not answer HealthCheck in {timeout} s")

    def stop(self) -> None:
        """Terminate the process and wait for it (kill after 10 s)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def call(self, method: str, data: bytes = b"") -> bytes:
        """Invoke one of the app's methods with a bare grpcio channel (see :func:`app_call`)."""
        return app_call(self.target, method, data)

    def stats(self) -> dict[str, int]:
        """The app's counters (see the module docstring)."""
        result: dict[str, int] = json.loads(self.call("stats"))
        return result

    def reset(self) -> None:
        self.call("reset")

    def __enter__(self) -> DaprApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_dapr_app() -> Iterator[DaprApp]:
    """Start a :class:`DaprApp` (another port if the chosen one was taken); stop it after."""
    last: Exception | None = None
    for _ in range(3):
        app = DaprApp()
        try:
            app.start()
        except RuntimeError as exc:
            app.stop()
            last = exc
            continue
        try:
            yield app
        finally:
            app.stop()
        return
    raise RuntimeError(f"could not start the dapr app: {last}")


# -------------------------------------------------------------------------------------------------
# The subprocess side. Everything below runs inside the app process only.


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0
        self.cancelled = 0

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "calls": self.calls,
                "cancelled": self.cancelled,
            }


_UNCOUNTED = frozenset({"stats", "reset"})


def _serve(port: int, start_delay: float) -> None:
    from concurrent import futures

    from dapr.clients.grpc._response import InvokeMethodResponse
    from dapr.ext.grpc import App
    from google.rpc import code_pb2, status_pb2
    from grpc_status import rpc_status

    counters = _Counters()
    current = threading.local()

    def context() -> grpc.ServicerContext:
        ctx: grpc.ServicerContext = current.context
        return ctx

    class _KeepContext(grpc.ServerInterceptor):  # type: ignore[type-arg]
        """Keeps the call's context for the handler and counts OnInvoke calls in flight."""

        def intercept_service(
            self,
            continuation: Callable[[grpc.HandlerCallDetails], Any],
            details: grpc.HandlerCallDetails,
        ) -> Any:
            handler = continuation(details)
            if handler is None or details.method != ON_INVOKE or handler.unary_unary is None:
                return handler
            inner = handler.unary_unary

            def behavior(request: Any, ctx: grpc.ServicerContext) -> Any:
                counted = request.method not in _UNCOUNTED
                if counted:
                    with counters.lock:
                        counters.calls += 1
                        counters.in_flight += 1
                        counters.max_in_flight = max(counters.max_in_flight, counters.in_flight)
                current.context = ctx
                try:
                    return inner(request, ctx)
                finally:
                    current.context = None
                    if counted:
                        with counters.lock:
                            counters.in_flight -= 1

            return grpc.unary_unary_rpc_method_handler(
                behavior,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

    app = App(
        thread_pool=futures.ThreadPoolExecutor(max_workers=32),
        interceptors=[_KeepContext()],
    )
    app.register_health_check(lambda: None)  # type: ignore[no-untyped-call]

    def method(name: str) -> Callable[[Callable[[Any], Any]], None]:
        register: Callable[[Callable[[Any], Any]], None] = app.method(name)
        return register

    @method("echo")
    def echo(req: Any) -> Any:
        context().set_trailing_metadata((("x-app-trailer", "dapr"),))
        data = req.proto if req.is_proto() else req.data
        return InvokeMethodResponse(
            data=data, content_type=req.content_type, headers=(("x-app-header", "dapr"),)
        )

    @method("fail")
    def fail(req: Any) -> Any:
        status = status_pb2.Status(
            code=code_pb2.INVALID_ARGUMENT,
            message="name is required",
            details=[bad_request_detail()],
        )
        context().abort_with_status(rpc_status.to_status(status))

    @method("sleep")
    def sleep(req: Any) -> Any:
        ctx = context()
        end = time.monotonic() + float(req.text() or "0")
        while time.monotonic() < end:
            if not ctx.is_active():
                with counters.lock:
                    counters.cancelled += 1
                return b"gone"
            time.sleep(0.005)
        return b"slept"

    @method("deadline")
    def deadline(req: Any) -> Any:
        return json.dumps({"time_remaining": remaining(context())})

    @method("metadata")
    def metadata(req: Any) -> Any:
        seen: dict[str, list[str]] = {}
        for key, value in req.get_metadata():
            text = base64.b64encode(value).decode() if isinstance(value, bytes) else value
            seen.setdefault(key, []).append(text)
        return json.dumps(seen)

    @method("stats")
    def stats(req: Any) -> Any:
        return json.dumps(counters.snapshot())

    @method("reset")
    def reset(req: Any) -> Any:
        with counters.lock:
            counters.max_in_flight = counters.in_flight
            counters.calls = 0
            counters.cancelled = 0
        return b"ok"

    _subscriptions(app)
    if start_delay > 0:
        time.sleep(start_delay)
    app.run(port, _HOST)


PUBSUB = "pubsub"
"""The pub/sub component name the dapr app's subscriptions use (see :func:`_subscriptions`)."""


def _subscriptions(app: Any) -> None:
    """Subscriptions of the dapr app: ``orders`` (default route SUCCESS, dead letter
    ``orders-dead``, metadata, and a rule ``event.type == "big"`` whose handler asks for RETRY),
    ``drops`` (DROP) and ``boom`` (the handler raises)."""
    from dapr.clients.grpc._response import TopicEventResponse
    from dapr.ext.grpc import Rule

    @app.subscribe(  # type: ignore[untyped-decorator]
        pubsub_name=PUBSUB,
        topic="orders",
        metadata={"team": "billing"},
        dead_letter_topic="orders-dead",
    )
    def orders(event: Any) -> Any:
        return TopicEventResponse("success")

    @app.subscribe(  # type: ignore[untyped-decorator]
        pubsub_name=PUBSUB, topic="orders", rule=Rule('event.type == "big"', 1)
    )
    def big_orders(event: Any) -> Any:
        return TopicEventResponse("retry")

    @app.subscribe(pubsub_name=PUBSUB, topic="drops")  # type: ignore[untyped-decorator]
    def drops(event: Any) -> Any:
        return TopicEventResponse("drop")

    @app.subscribe(pubsub_name=PUBSUB, topic="boom")  # type: ignore[untyped-decorator]
    def boom(event: Any) -> Any:
        raise RuntimeError("boom")


if __name__ == "__main__":
    _serve(int(sys.argv[1]), float(sys.argv[2]))
