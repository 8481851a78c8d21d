"""A finished grpc.aio call's headers and trailers as pairs, without building ``grpc.aio.Metadata``.

``grpc.aio``'s ``initial_metadata()`` and ``trailing_metadata()`` take the pairs the call's Cython
core already holds, regroup them into a ``grpc.aio.Metadata`` (an ordered dict of lists), and every
caller here turns that straight back into pairs. Timed inside real calls on this project's benchmark
machine, the two public reads plus that conversion cost about 20 µs a call; reading the core's pairs
costs about 4 µs.

:func:`read_response_metadata` reads the core's pairs when the call is grpc.aio's own (it keeps the
Cython call as ``_cython_call``, and that object is the ``cygrpc._AioCall`` type this module checked
at import for the two methods it uses). Anything else (an intercepted call, another
implementation of the call interface, a grpcio whose internals moved) takes the public path, so the
result is the same either way except for one thing the fast path does better: pairs keep the order
they had on the wire, as grpcio's sync API gives them, where ``grpc.aio.Metadata`` groups repeated
keys together. :func:`uses_core_metadata` says which path a call takes (the tests assert the fast
one is live on the grpcio this project pins).
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any

# grpcio ships no type information for its Cython module.
cygrpc: Any = importlib.import_module("grpc._cython.cygrpc")

Pairs = tuple[tuple[str, str | bytes], ...]


def _core_call_type() -> Any:
    call_type = getattr(cygrpc, "_AioCall", None)
    status_type = getattr(cygrpc, "AioRpcStatus", None)
    if call_type is None or status_type is None:
        return None
    needed = (
        hasattr(call_type, "initial_metadata")
        and hasattr(call_type, "status")
        and hasattr(status_type, "trailing_metadata")
    )
    return call_type if needed else None


_CORE_CALL: Any = _core_call_type()


def uses_core_metadata(call: Any) -> bool:
    """True when :func:`read_response_metadata` reads ``call``'s pairs from grpc's core."""
    return _CORE_CALL is not None and type(getattr(call, "_cython_call", None)) is _CORE_CALL


def response_metadata_steps(call: Any) -> Generator[Any, None, tuple[Pairs, Pairs]]:
    """:func:`read_response_metadata` for ``yield from`` inside a generator-based awaitable."""
    core: Any = getattr(call, "_cython_call", None)
    if _CORE_CALL is not None and type(core) is _CORE_CALL:
        initial = yield from core.initial_metadata().__await__()
        status = yield from core.status().__await__()
        return tuple(initial or ()), tuple(status.trailing_metadata() or ())
    initial = yield from call.initial_metadata().__await__()
    trailing = yield from call.trailing_metadata().__await__()
    return tuple(initial or ()), tuple(trailing or ())


# The same generator, awaitable from ``async def`` code (types.coroutine only flags it: no wrapper).
read_response_metadata: Callable[[Any], Awaitable[tuple[Pairs, Pairs]]] = types.coroutine(
    response_metadata_steps
)
"""``await read_response_metadata(call)``: ``(headers, trailers)`` of a grpc.aio call as tuples of
``(key, value)`` pairs. It waits as ``call.initial_metadata()`` and ``call.trailing_metadata()``
would (not at all for a call that has ended). Values are ``str``, or ``bytes`` for ``-bin`` keys."""


__all__ = ["Pairs", "read_response_metadata", "response_metadata_steps", "uses_core_metadata"]
