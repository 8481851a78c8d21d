"""The ``plain`` and ``plain-aio`` variants: what a load tester such as ghz does, one bare grpcio
call per request.

``plain`` is the variant ``grpc-channel bench --target`` runs by default: a bare grpcio sync
generic call (raw bytes in and out: the response is not decoded, as a load tester need not), on a
channel of its own opened by :func:`grpc_channel.bench.target.open_channel`. ``plain-aio`` is the
same call with ``grpc.aio`` (tasks instead of threads). They are the variants that honour the
target's TLS settings and authority, templated data and metadata, and streaming methods.

Templates: when the target has a ``data_template`` (ghz call-template actions in ``-d``) or
metadata values holding actions (``-m``), each call renders them with its request number and
encodes the JSON with the request type (a JSON parse per call, paid only by templated data). A
call's data and metadata are rendered with the same number. Numbers count from
``target.number_start`` by ``target.number_stride`` in the order calls are sent: 0, 1, 2, ... with
one worker; with ``n`` worker processes worker ``i`` numbers ``i, i + n, i + 2n, ...``, so numbers
are unique over the run (their order across workers follows the workers' pace).

Streaming methods are called whole, one stream per call (as ghz counts them): a server stream is
read to its end, a client or bidi stream sends the target's messages (``-d`` as a JSON array),
then is read to its end.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf import json_format

from .target import Target, TargetError, open_channel, resolve_message_types
from .template import DataTemplate, MetadataTemplate
from .variants import (
    AsyncCaller,
    SyncCaller,
    Variant,
    VariantError,
    VariantSettings,
    get_variant,
    register,
)

__all__ = [
    "PLAIN",
    "PLAIN_AIO",
    "aio_stream_call",
    "plain_aio_variant",
    "plain_variant",
    "stream_call",
]

PLAIN = "plain"
"""The sync variant's name."""
PLAIN_AIO = "plain-aio"
"""The aio variant's name."""

Metadata = tuple[tuple[str, str], ...] | None
# One call's request bytes and metadata.
_Request = tuple[bytes, Metadata]


def _requests(target: Target) -> Callable[[], _Request]:
    """The request bytes and metadata of each next call: fixed, or rendered from the templates
    with the next request number (shared by the sync and aio variants)."""
    metadata_template = MetadataTemplate.parse(target.metadata, target.method)
    fixed_metadata = target.metadata or None
    if target.data_template is None and metadata_template is None:
        fixed: _Request = (target.payload, fixed_metadata)
        return lambda: fixed
    # next() on a count is atomic under the GIL: threads need no lock.
    numbers = itertools.count(target.number_start, target.number_stride)
    render_data: Callable[[int], bytes] = lambda _n: target.payload  # noqa: E731
    if target.data_template is not None:
        types = resolve_message_types(target)
        if types is None:
            raise TargetError("templated data needs the request type (a JSON request)")
        request_cls = types[0]
        template = DataTemplate.parse(target.data_template, target.method)
        assert template is not None

        def render_data(number: int) -> bytes:
            message = json_format.Parse(template.render(number), request_cls())
            return message.SerializeToString()

    def next_request() -> _Request:
        number = next(numbers)
        metadata = fixed_metadata
        if metadata_template is not None:
            metadata = metadata_template.render(number)
        return render_data(number), metadata

    return next_request


def stream_call(channel: Any, target: Target) -> Callable[[bytes, Metadata], int]:
    """A function making one call of ``target`` on the sync ``channel`` in its shape, whole, with
    the request and metadata given: a server stream is read to its end, a client or bidi stream
    sends ``target.messages`` (or the one request given) and is read to its end. Returns the
    number of response messages; a failed call raises ``grpc.RpcError``."""
    timeout = target.timeout
    messages = target.messages
    if target.shape == "server_stream":
        server_stream = channel.unary_stream(target.method)
        return lambda request, metadata: sum(
            1 for _ in server_stream(request, metadata=metadata, timeout=timeout)
        )
    if target.shape == "client_stream":
        client_stream = channel.stream_unary(target.method)

        def send(request: bytes, metadata: Metadata) -> int:
            client_stream(iter(messages or (request,)), metadata=metadata, timeout=timeout)
            return 1

        return send
    if target.shape == "bidi":
        bidi = channel.stream_stream(target.method)
        return lambda request, metadata: sum(
            1 for _ in bidi(iter(messages or (request,)), metadata=metadata, timeout=timeout)
        )
    unary = channel.unary_unary(target.method)

    def once(request: bytes, metadata: Metadata) -> int:
        unary(request, metadata=metadata, timeout=timeout)
        return 1

    return once


def aio_stream_call(channel: Any, target: Target) -> Callable[[bytes, Metadata], Awaitable[int]]:
    """:func:`stream_call` for a ``grpc.aio`` channel: the function returns an awaitable."""
    timeout = target.timeout
    messages = target.messages
    shape = target.shape
    if shape in ("server_stream", "bidi"):
        if shape == "server_stream":
            server_stream = channel.unary_stream(target.method)

            def start(request: bytes, metadata: Metadata) -> Any:
                return server_stream(request, metadata=metadata, timeout=timeout)

        else:
            bidi = channel.stream_stream(target.method)

            def start(request: bytes, metadata: Metadata) -> Any:
                outgoing = iter(messages or (request,))
                return bidi(outgoing, metadata=metadata, timeout=timeout)

        async def read_all(request: bytes, metadata: Metadata) -> int:
            count = 0
            async for _ in start(request, metadata):
                count += 1
            return count

        return read_all
    if shape == "client_stream":
        client_stream = channel.stream_unary(target.method)

        async def send(request: bytes, metadata: Metadata) -> int:
            outgoing = iter(messages or (request,))
            await client_stream(outgoing, metadata=metadata, timeout=timeout)
            return 1

        return send
    unary = channel.unary_unary(target.method)

    async def once(request: bytes, metadata: Metadata) -> int:
        await unary(request, metadata=metadata, timeout=timeout)
        return 1

    return once


def _sync_plain(target: Target, settings: VariantSettings) -> SyncCaller:
    channel = open_channel(target)
    send = stream_call(channel, target)
    requests = _requests(target)

    def call() -> str:
        send(*requests())
        return "OK"

    def close() -> None:
        channel.close()

    return SyncCaller(call, close)


async def _aio_plain(target: Target, settings: VariantSettings) -> AsyncCaller:
    # Opened inside the worker's event loop (the factory is awaited there): aio channels bind to
    # the loop that creates them.
    channel = open_channel(target, aio=True)
    send = aio_stream_call(channel, target)
    requests = _requests(target)

    async def call() -> str:
        await send(*requests())
        return "OK"

    async def close() -> None:
        await channel.close()

    return AsyncCaller(call, close)


def plain_variant() -> Variant:
    """The ``plain`` variant (importing this module registers it)."""
    return Variant(
        PLAIN,
        "bare grpcio sync generic call (raw bytes), with the target's TLS and per-call data: "
        "the load tester's variant",
        sync_factory=_sync_plain,
    )


def plain_aio_variant() -> Variant:
    """The ``plain-aio`` variant (importing this module registers it)."""
    return Variant(
        PLAIN_AIO,
        "bare grpc.aio generic call (raw bytes), with the target's TLS and per-call data: the "
        "load tester's variant on asyncio",
        aio_factory=_aio_plain,
        baselines=(PLAIN,),
    )


for _make in (plain_variant, plain_aio_variant):
    _variant = _make()
    try:
        get_variant(_variant.name)
    except VariantError:
        register(_variant)
