"""``Retry``: try a call again on retryable status codes, with grpc-go's exponential backoff.

Backoff (grpc-go ``backoff.Exponential``): before retry *r* (0 for the first retry) wait
``base_delay`` when r is 0, else ``min(base_delay * multiplier**r, max_delay)`` scaled by a random
factor in ``[1 - jitter, 1 + jitter]``. A server may override the wait with the
``grpc-retry-pushback-ms`` trailer (milliseconds); a negative or malformed value there means "do
not retry", as in grpc-go.

Rules:

- at most ``max_attempts`` attempts in all (the first one included);
- only for codes in ``retryable_codes`` (default UNAVAILABLE);
- never past the call's deadline: a wait that would reach it ends the call with the last error;
  put :class:`~grpc_channel.interceptors._deadline.Deadline` before ``Retry`` to give calls a
  deadline;
- never after a streaming response has begun (the chain commits a response stream at its first
  message), and never for an aio request stream fed through ``write()`` (nothing to resend);
  request streams given as iterators are kept in memory for the duration of the call and resent;
- each retry carries ``grpc-previous-rpc-attempts`` (the number of earlier attempts), as gRPC's
  built-in retry does; ``call.attempt`` tells inner policies which attempt they see. grpc core
  parses that header on the server side and does not pass it to grpcio handlers; to let a Python
  handler see the count, name another header with ``attempt_header=`` (e.g.
  ``"x-previous-rpc-attempts"``).

Policies after ``Retry`` in the chain run once per attempt (a token is sent on every attempt, a
concurrency slot is held per attempt); policies before it run once per call.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import grpc

from ._policy import ClientCall, ClientPolicy
from ._run import monotonic

__all__ = ["PREVIOUS_ATTEMPTS_HEADER", "PUSHBACK_TRAILER", "Backoff", "Retry"]

R = TypeVar("R")

PREVIOUS_ATTEMPTS_HEADER = "grpc-previous-rpc-attempts"
PUSHBACK_TRAILER = "grpc-retry-pushback-ms"

_HEADER = re.compile(r"[0-9a-z_.\-]+(?<!-bin)")


class Backoff:
    """grpc-go's exponential backoff, as pure arithmetic (see the module doc)."""

    __slots__ = ("base_delay", "jitter", "max_delay", "multiplier")

    def __init__(
        self,
        base_delay: float = 0.1,
        multiplier: float = 1.6,
        jitter: float = 0.2,
        max_delay: float = 5.0,
    ) -> None:
        for name, value in (("base_delay", base_delay), ("max_delay", max_delay)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be seconds as a number, got {value!r}")
            if not 0 <= value < math.inf:
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if not isinstance(multiplier, (int, float)) or not 1 <= multiplier < math.inf:
            raise ValueError(f"multiplier must be a finite number >= 1, got {multiplier!r}")
        if not isinstance(jitter, (int, float)) or not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1], got {jitter!r}")
        if max_delay < base_delay:
            raise ValueError(f"max_delay ({max_delay}) must be >= base_delay ({base_delay})")
        self.base_delay = float(base_delay)
        self.multiplier = float(multiplier)
        self.jitter = float(jitter)
        self.max_delay = float(max_delay)

    def delay(self, retries: int, rand: float) -> float:
        """Seconds to wait before retry number ``retries`` (0-based); ``rand`` in [0, 1)."""
        if retries == 0:
            return self.base_delay
        backoff = self.base_delay
        while backoff < self.max_delay and retries > 0:
            backoff *= self.multiplier
            retries -= 1
        backoff = min(backoff, self.max_delay)
        backoff *= 1 + self.jitter * (rand * 2 - 1)
        return max(0.0, backoff)

    def __repr__(self) -> str:
        return (
            f"Backoff(base_delay={self.base_delay}, multiplier={self.multiplier}, "
            f"jitter={self.jitter}, max_delay={self.max_delay})"
        )


def _pushback(trailers: Any) -> float | bool | None:
    """Seconds from a pushback trailer; None if absent; False if it forbids retrying."""
    for key, value in trailers or ():
        if key == PUSHBACK_TRAILER:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            try:
                ms = int(text)
            except ValueError:
                return False
            return False if ms < 0 else ms / 1000.0
    return None


class Retry(ClientPolicy):
    """Client: ``Retry(max_attempts=3, *, retryable_codes=(UNAVAILABLE,), base_delay=0.1,
    multiplier=1.6, jitter=0.2, max_delay=5.0, attempt_header="grpc-previous-rpc-attempts")``
    (seconds). See the module doc."""

    __slots__ = ("_random", "attempt_header", "backoff", "max_attempts", "retryable_codes")

    def __init__(
        self,
        max_attempts: int = 3,
        *,
        retryable_codes: Iterable[grpc.StatusCode] = (grpc.StatusCode.UNAVAILABLE,),
        base_delay: float = 0.1,
        multiplier: float = 1.6,
        jitter: float = 0.2,
        max_delay: float = 5.0,
        attempt_header: str = PREVIOUS_ATTEMPTS_HEADER,
    ) -> None:
        if not isinstance(attempt_header, str) or not _HEADER.fullmatch(attempt_header):
            raise ValueError(
                "attempt_header must be a lower-case metadata key of [0-9a-z-_.] not ending in "
                f"-bin, got {attempt_header!r}"
            )
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        codes = frozenset(retryable_codes)
        for code in codes:
            if not isinstance(code, grpc.StatusCode):
                raise TypeError(f"retryable_codes must hold grpc.StatusCode values, got {code!r}")
            if code is grpc.StatusCode.OK:
                raise ValueError("retryable_codes cannot contain OK")
        self.max_attempts = max_attempts
        self.attempt_header = attempt_header
        self.retryable_codes = codes
        self.backoff = Backoff(base_delay, multiplier, jitter, max_delay)
        self._random = random.Random()

    def _delay(self, call: ClientCall, exc: BaseException, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None to give up with ``exc``."""
        if attempt >= self.max_attempts or not call.replayable:
            return None
        code = getattr(exc, "code", None)
        if not callable(code) or code() not in self.retryable_codes:
            return None
        trailers = getattr(exc, "trailing_metadata", None)
        pushed = _pushback(trailers() if callable(trailers) else None)
        if pushed is False:
            return None
        delay = (
            float(pushed)
            if pushed is not None
            else self.backoff.delay(attempt - 1, self._random.random())
        )
        deadline = call.deadline
        if deadline is not None and monotonic() + delay >= deadline:
            return None
        return delay

    def _prepare(self, call: ClientCall, base: list[tuple[str, str | bytes]], attempt: int) -> None:
        call.attempt = attempt
        if attempt > 1:
            md = list(base)
            md.append((self.attempt_header, str(attempt - 1)))
            call.metadata = md

    def client_around(self, call: ClientCall, attempt: Callable[[ClientCall], R]) -> R:
        if self.max_attempts == 1 or not call.replayable:
            return attempt(call)
        base = list(call.metadata)
        n = 1
        while True:
            self._prepare(call, base, n)
            try:
                return attempt(call)
            except grpc.RpcError as exc:
                delay = self._delay(call, exc, n)
                if delay is None:
                    raise
            time.sleep(delay)
            n += 1

    async def client_around_async(
        self, call: ClientCall, attempt: Callable[[ClientCall], Awaitable[R]]
    ) -> R:
        if self.max_attempts == 1 or not call.replayable:
            return await attempt(call)
        base = list(call.metadata)
        n = 1
        while True:
            self._prepare(call, base, n)
            try:
                return await attempt(call)
            except grpc.RpcError as exc:
                delay = self._delay(call, exc, n)
                if delay is None:
                    raise
            await asyncio.sleep(delay)
            n += 1

    def __repr__(self) -> str:
        codes = sorted(c.name for c in self.retryable_codes)
        return f"Retry(max_attempts={self.max_attempts}, retryable_codes={codes}, {self.backoff!r})"
