"""The asyncio shell: a ``grpc.aio.server`` whose behaviours ask the dispatcher what to do, run the
handler and send the outcome. Plain handlers run in a worker thread (``asyncio.to_thread``) so they
never block the loop; ``async def`` handlers are awaited on the server's loop."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import grpc
from google.protobuf.message import Message

from grpc_channel.app._dispatch import Dispatcher, Failure, HandlerCall, Outcome, is_async
from grpc_channel.app._serving import (
    SERVER_OPTIONS,
    bind_address,
    check_bound,
    generic_handlers,
)


async def _send(outcome: Outcome, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
    if isinstance(outcome, Failure):
        await context.abort(outcome.code, outcome.details, outcome.trailers)
    if outcome.headers:
        await context.send_initial_metadata(outcome.headers)
    if outcome.trailers:
        context.set_trailing_metadata(outcome.trailers)
    return outcome.message


async def _run(call: HandlerCall) -> Outcome:
    try:
        if is_async(call.handler):
            result: Any = await call.handler(*call.args)
        else:
            result = await asyncio.to_thread(call.handler, *call.args)
            if inspect.isawaitable(result):
                result = await result
    except Exception as exc:
        return call.finish(error=exc)
    return call.finish(result)


class AioServer:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._server: grpc.aio.Server | None = None

    def _behavior(self, path: str) -> Any:
        dispatcher = self._dispatcher

        async def behavior(
            request: Message, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Message:
            step = dispatcher.prepare(path, request, context.invocation_metadata())
            outcome = await _run(step) if isinstance(step, HandlerCall) else step
            return await _send(outcome, context)

        return behavior

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (plaintext) and start serving; return the bound port."""
        address = bind_address(host, port)
        server = grpc.aio.server(handlers=generic_handlers(self._behavior), options=SERVER_OPTIONS)
        try:
            bound = check_bound(server.add_insecure_port(address), address)
        except (RuntimeError, OSError) as exc:
            await server.stop(None)
            raise OSError(f"could not listen on {address}: {exc}") from exc
        await server.start()
        self._server = server
        return bound

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def stop(self, grace: float | None) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
