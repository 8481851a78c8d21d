"""The sync shell: a ``grpc.server`` whose behaviours ask the dispatcher what to do, run the
handler and send the outcome. ``async def`` handlers (and plain ones that return an awaitable) run
on the server's private event-loop thread while the gRPC worker thread waits for them."""

from __future__ import annotations

import inspect
from concurrent import futures
from typing import Any

import grpc
from google.protobuf.message import Message

from grpc_channel.app._dispatch import Dispatcher, Failure, HandlerCall, Outcome
from grpc_channel.app._loop_thread import LoopThread
from grpc_channel.app._serving import (
    SERVER_OPTIONS,
    bind_address,
    check_bound,
    generic_handlers,
)


def _send(outcome: Outcome, context: grpc.ServicerContext) -> Message:
    if outcome.trailers:
        context.set_trailing_metadata(outcome.trailers)
    if isinstance(outcome, Failure):
        context.abort(outcome.code, outcome.details)
    if outcome.headers:
        context.send_initial_metadata(outcome.headers)
    return outcome.message


class SyncServer:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._loop = LoopThread()
        self._server: grpc.Server | None = None

    def _run(self, call: HandlerCall) -> Outcome:
        try:
            result: Any = call.handler(*call.args)
            if inspect.isawaitable(result):
                result = self._loop.run(result)
        except Exception as exc:
            return call.finish(error=exc)
        return call.finish(result)

    def _behavior(self, path: str) -> Any:
        dispatcher = self._dispatcher

        def behavior(request: Message, context: grpc.ServicerContext) -> Message:
            step = dispatcher.prepare(path, request, context.invocation_metadata())
            outcome = self._run(step) if isinstance(step, HandlerCall) else step
            return _send(outcome, context)

        return behavior

    def start(self, host: str, port: int, max_workers: int) -> int:
        """Listen on ``host:port`` (plaintext) and start serving; return the bound port."""
        address = bind_address(host, port)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc-app"),
            handlers=generic_handlers(self._behavior),
            options=SERVER_OPTIONS,
        )
        try:
            bound = check_bound(server.add_insecure_port(address), address)
        except (RuntimeError, OSError) as exc:
            server.stop(None)
            raise OSError(f"could not listen on {address}: {exc}") from exc
        server.start()
        self._server = server
        return bound

    def wait(self) -> None:
        if self._server is not None:
            self._server.wait_for_termination()

    def stop(self, grace: float | None) -> None:
        """Stop serving (calls in flight get ``grace`` seconds), then stop the event loop."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait()
        self._loop.stop()
