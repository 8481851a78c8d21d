"""The subscription loop the network brokers (Redis Streams, JetStream) share: fetch up to the free
handler slots, run each item in its own task, stop with or without draining. Brokers supply
``fetch`` and ``process``. (The in-memory broker, whose fetch is a deque pop, runs worker tasks that
handle messages in place instead: see ``memory.py``.)

Stopping cancels the delayed-redelivery timers and the fetch (a fetch cut short leaves its messages
with the broker, which redelivers them: at-least-once), then waits for (``drain``) or cancels the
running ``process`` tasks. A broker whose client does not survive a cancelled command (redis-py's
blocking reads) sets ``cancel_fetch = False``: stop then lets the running fetch end by itself
(its block timeout) and hands what it returned to the handlers like any other fetch.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Generic, TypeVar

from .base import SubscriptionHandle

__all__ = ["Runner"]

_log = logging.getLogger(__name__)

Item = TypeVar("Item")

# After a failed fetch (connection lost, server restarting), wait this long before the next try.
_FETCH_RETRY_DELAY = 0.5


class Runner(SubscriptionHandle, Generic[Item], abc.ABC):
    """Base of each broker's subscription handle."""

    cancel_fetch = True

    def __init__(self, broker: str, concurrency: int) -> None:
        self._broker = broker
        self._concurrency = concurrency
        self._in_flight = 0
        self._slot_freed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._fetching = False
        self.stopping = asyncio.Event()
        self._stopped = False
        self._stop_lock = asyncio.Lock()

    @abc.abstractmethod
    async def fetch(self, limit: int) -> Sequence[Item]:
        """Wait for and return 1..``limit`` items (an empty result is allowed: fetch again)."""

    @abc.abstractmethod
    async def process(self, item: Item) -> None:
        """Run the handler on ``item`` and settle it with the broker."""

    async def on_stopped(self) -> None:
        """Release what the subscription holds, after its tasks are done."""

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name=f"{self._broker}-subscription")

    async def _wait_for_slot(self) -> None:
        while self._in_flight >= self._concurrency:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    def abandoned(self, item: Item) -> None:
        """``item`` was cancelled before ``process`` began (a stop without drain right after the
        fetch): give it back if the broker would not redeliver it by itself."""

    def _launch(self, item: Item) -> None:
        self._in_flight += 1
        started = False

        async def run() -> None:
            nonlocal started
            started = True
            try:
                await self.process(item)
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("%s subscription: settling a message failed", self._broker)

        def finished(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._in_flight -= 1
            self._slot_freed.set()
            if not started:
                self.abandoned(item)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(finished)

    async def _loop(self) -> None:
        while not self.stopping.is_set():
            await self._wait_for_slot()
            # Hold the free slots while fetching, so a redelivery timer cannot take one of them
            # meanwhile and push the handlers past the bound.
            limit = self._concurrency - self._in_flight
            self._in_flight += limit
            self._fetching = True
            try:
                items = await self.fetch(limit)
            except Exception:
                _log.exception("%s subscription: fetch failed; retrying", self._broker)
                items = None
            finally:
                self._fetching = False
                self._in_flight -= limit
                self._slot_freed.set()
            if items is None:
                await asyncio.sleep(_FETCH_RETRY_DELAY)
                continue
            for item in items:
                self._launch(item)

    def schedule(self, delay: float, item: Item) -> None:
        """Process ``item`` again after ``delay`` seconds, in a free slot, unless stopped first."""

        async def later() -> None:
            await asyncio.sleep(delay)
            await self._wait_for_slot()
            if not self.stopping.is_set():
                self._launch(item)

        timer = asyncio.create_task(later())
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def stop(self, drain: bool = True) -> None:
        self.stopping.set()
        if not drain:
            # At once, even while another stop() drains (it holds the lock): a stop without drain
            # must never wait for that drain to end.
            for task in list(self._tasks):
                task.cancel()
        async with self._stop_lock:
            if self._stopped:
                return
            pending = [t for t in (self._loop_task, *self._timers) if t is not None]
            for task in pending:
                if task is not self._loop_task or self.cancel_fetch or not self._fetching:
                    task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if not drain:
                for task in self._tasks:
                    task.cancel()
            while self._tasks:
                # wait(), not gather(): when the caller gives up on a drain (its stop() is
                # cancelled), the handlers keep running for the next stop() to drain or cancel.
                await asyncio.wait(list(self._tasks))
            with contextlib.suppress(Exception):
                await self.on_stopped()
            self._stopped = True
