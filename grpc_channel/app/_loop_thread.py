"""A private event loop on its own thread, where the sync server runs ``async def`` handlers.

The sync server's worker thread submits the handler's coroutine and waits for it, so every
coroutine of one server shares one loop (an asyncio client created in one handler can be reused by
the next). The loop starts on first use and stops, cancelling what still runs, on :meth:`stop`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import TypeVar

_T = TypeVar("_T")


async def _wait(awaitable: Awaitable[_T]) -> _T:
    return await awaitable


class LoopThread:
    def __init__(self, name: str = "grpc_channel.app-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, awaitable: Awaitable[_T]) -> _T:
        """Run ``awaitable`` on the loop and return its result (or raise its exception)."""
        future = asyncio.run_coroutine_threadsafe(_wait(awaitable), self._running_loop())
        return future.result()

    def stop(self) -> None:
        """Cancel what still runs, stop the loop and join its thread (idempotent)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def __repr__(self) -> str:
        return f"LoopThread(running={self._loop is not None})"
