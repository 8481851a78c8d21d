"""A finished call's headers and trailers as pairs, read where grpcio keeps them.

Every capture here (``Capture``, the Channel's response, the call engine's ``header()`` and
``trailer()`` options) wants a call's initial and trailing metadata as tuples of ``(key, value)``
pairs, once the call has ended. grpcio's public accessors get there the long way:

- ``grpc.aio``'s ``initial_metadata()`` and ``trailing_metadata()`` are coroutines that regroup the
  pairs its Cython call holds into a ``grpc.aio.Metadata`` (an ordered dict of lists), which the
  caller then walks back into pairs.
- The sync call object takes its lock and builds a wait closure for each read, even when the call
  has ended and nothing can change.

Timed in place (after each real call) on this project's 2-core benchmark machine, the two reads
cost about 25 µs aio and 9 µs sync through the public accessors, against about 7 µs and 3 µs
here: ``python -m grpc_channel.bench.response_metadata`` measures it.

:func:`read_response_metadata` (aio) and :func:`ended_call_metadata` (sync) take the short way when
the call object is grpcio's own and has the internals checked here, and the public accessors
otherwise: an intercepted call, another implementation of the call interface, a call that has not
ended (sync), or a grpcio whose internals moved. The pairs are the same either way, with one
difference in the fast path's favour on aio: pairs keep the order they had on the wire, as
grpcio's sync API gives them, where ``grpc.aio.Metadata`` groups repeated keys together.
:func:`uses_fast_path` says which way a call goes; the tests assert that the fast way is live on
the grpcio this project pins, so an upgrade that moves the internals shows up as a failing test
rather than as a silent slowdown.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from ._metadata_pairs import MetadataPairs

# grpcio ships no type information for these internals.
_cygrpc: Any = importlib.import_module("grpc._cython.cygrpc")
_sync_channel: Any = importlib.import_module("grpc._channel")

__all__ = [
    "ended_call_metadata",
    "read_response_metadata",
    "response_metadata_steps",
    "uses_fast_path",
]


def _aio_core_call_type() -> Any:
    call_type = getattr(_cygrpc, "_AioCall", None)
    status_type = getattr(_cygrpc, "AioRpcStatus", None)
    if call_type is None or status_type is None:
        return None
    needed = (
        hasattr(call_type, "initial_metadata")
        and hasattr(call_type, "status")
        and hasattr(status_type, "trailing_metadata")
    )
    return call_type if needed else None


_AIO_CORE_CALL: Any = _aio_core_call_type()
# The call object sync grpcio returns from with_call(), future() and response-streaming calls.
_SYNC_CALL: Any = getattr(_sync_channel, "_MultiThreadedRendezvous", None)


def _sync_state(call: Any) -> Any:
    """The ended state of a sync grpcio call, or None (not grpcio's, not ended, or moved)."""
    if _SYNC_CALL is None or type(call) is not _SYNC_CALL:
        return None
    state: Any = getattr(call, "_state", None)
    try:
        # grpcio sets all three, under the state's lock, by the time the call has ended, and
        # changes none of them after; until then the public accessors wait properly.
        ended = (
            state.code is not None
            and state.initial_metadata is not None
            and state.trailing_metadata is not None
        )
    except AttributeError:
        return None
    return state if ended else None


def uses_fast_path(call: Any) -> bool:
    """True when ``call``'s headers and trailers are read from grpcio's internals: a grpc.aio
    call, or a sync grpcio call that has ended."""
    if _sync_state(call) is not None:
        return True
    return (
        _AIO_CORE_CALL is not None and type(getattr(call, "_cython_call", None)) is _AIO_CORE_CALL
    )


def ended_call_metadata(call: Any) -> tuple[MetadataPairs, MetadataPairs]:
    """``(headers, trailers)`` of a sync grpcio call as tuples of ``(key, value)`` pairs.

    Meant for a call that has ended (after ``with_call`` or a finished stream or future); for one
    that has not, it waits as ``call.initial_metadata()`` and ``call.trailing_metadata()`` do.
    ``None`` from grpcio becomes ``()``.
    """
    state = _sync_state(call)
    if state is not None:
        return tuple(state.initial_metadata or ()), tuple(state.trailing_metadata or ())
    return tuple(call.initial_metadata() or ()), tuple(call.trailing_metadata() or ())


def response_metadata_steps(
    call: Any,
) -> Generator[Any, None, tuple[MetadataPairs, MetadataPairs]]:
    """:func:`read_response_metadata` for ``yield from`` inside a generator-based awaitable."""
    core: Any = getattr(call, "_cython_call", None)
    if _AIO_CORE_CALL is not None and type(core) is _AIO_CORE_CALL:
        initial = yield from core.initial_metadata().__await__()
        status = yield from core.status().__await__()
        return tuple(initial or ()), tuple(status.trailing_metadata() or ())
    initial = yield from call.initial_metadata().__await__()
    trailing = yield from call.trailing_metadata().__await__()
    return tuple(initial or ()), tuple(trailing or ())


# The same generator, awaitable from ``async def`` code (types.coroutine only flags it: no wrapper).
read_response_metadata: Callable[[Any], Awaitable[tuple[MetadataPairs, MetadataPairs]]] = (
    types.coroutine(response_metadata_steps)
)
"""``await read_response_metadata(call)``: ``(headers, trailers)`` of a grpc.aio call as tuples of
``(key, value)`` pairs. It waits as ``call.initial_metadata()`` and ``call.trailing_metadata()``
would (not at all for a call that has ended). Values are ``str``, or ``bytes`` for ``-bin`` keys."""
