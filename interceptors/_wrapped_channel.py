"""What a wrapped sync channel and a wrapped ``grpc.aio`` channel share: the multicallable cache.

``Chain.wrap`` and ``Chain.wrap_aio`` return channels whose ``unary_unary`` ... ``stream_stream``
build, once per (method, serializer, deserializer), a multicallable that runs the chain around the
wrapped channel's own, kept in a :class:`~grpc_channel.interceptors._bounded.BoundedCache` (a caller
that builds paths dynamically must not grow memory without bound). The rule lives here; each shell
names its four multicallable classes and adds only its I/O surface (close, connectivity, context
managers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from ._bounded import BoundedCache
from ._policy import CallShape

if TYPE_CHECKING:
    from ._chain import Chain

__all__ = ["KEYS_PER_METHOD", "WrappedChannelBase"]

KEYS_PER_METHOD = 4
"""A key is a method with its shape and (de)serializers, so a wrapped channel caches up to this
many times ``BoundedCache.default_capacity`` multicallables (4096 by default)."""


# The four multicallable factories, in the order of ``multicallable_classes``.
_KINDS = tuple((shape.value, shape) for shape in CallShape)


def _factory(index: int) -> Callable[..., Any]:
    """``unary_unary`` ... ``stream_stream``: one body for the four (they differ by the index)."""
    kind, shape = _KINDS[index]

    def make(
        self: WrappedChannelBase,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: Any = False,
    ) -> Any:
        return self._get(
            kind,
            index,
            shape,
            method,
            request_serializer,
            response_deserializer,
            _registered_method,
        )

    make.__name__ = kind
    make.__qualname__ = f"WrappedChannelBase.{make.__name__}"
    return make


class WrappedChannelBase:
    """The cache and the four multicallable factories of a wrapped channel.

    Subclasses set ``multicallable_classes`` to their (unary-unary, unary-stream, stream-unary,
    stream-stream) classes, each constructed as ``cls(chain, inner, method, shape)``.
    """

    multicallable_classes: ClassVar[tuple[type, type, type, type]]

    def __init__(self, channel: Any, chain: Chain) -> None:
        self._channel = channel
        self._chain = chain
        self._bounded: BoundedCache[tuple[Any, ...], Any] = BoundedCache(
            KEYS_PER_METHOD * BoundedCache.default_capacity
        )
        # Hits read the plain dict (no lock, no Python frame); misses insert through _store.
        self._cache = self._bounded.data

    @property
    def chain(self) -> Chain:
        """The chain this channel runs."""
        return self._chain

    def _store(self, key: tuple[Any, ...], made: Any) -> Any:
        """Cache ``made`` under ``key`` (after a miss) and return it."""
        self._bounded[key] = made
        return made

    def _get(
        self,
        kind: str,
        index: int,
        shape: CallShape,
        method: str,
        request_serializer: Any,
        response_deserializer: Any,
        registered: Any,
    ) -> Any:
        key = (kind, method, request_serializer, response_deserializer)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        factory = getattr(self._channel, kind)
        if registered:
            inner = factory(
                method, request_serializer, response_deserializer, _registered_method=registered
            )
        else:
            inner = factory(method, request_serializer, response_deserializer)
        made = self.multicallable_classes[index](self._chain, inner, method, shape)
        return self._store(key, made)

    unary_unary = _factory(0)
    unary_stream = _factory(1)
    stream_unary = _factory(2)
    stream_stream = _factory(3)
