"""The errors of the app framework: bad registrations, and the exception a handler raises to end
its call with a chosen gRPC status.

Registration mistakes (a duplicate route or method, a bad argument, registering on a serving app)
raise :class:`RegistrationError`, a ``ValueError`` whose message names what was wrong and what is
allowed. A duplicate subscription route raises its subclass :class:`DuplicateRouteError`, which
also carries the ``(pubsub, topic, route)`` it collided on.

A handler ends its call with a status of its choosing by raising :class:`AbortCall`; it works the
same in plain and ``async def`` handlers, under the sync and the asyncio server (a handler never
sees the gRPC context, which differs between the two and cannot be used from a worker thread).
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

__all__ = ["AbortCall", "DuplicateRouteError", "RegistrationError"]


class RegistrationError(ValueError):
    """A handler could not be registered: the message names the argument and what is allowed."""


class DuplicateRouteError(RegistrationError):
    """A second handler for the same ``(pubsub, topic, route)``; ``route`` is ``""`` for the
    default handler (the one registered without ``match``)."""

    def __init__(self, pubsub: str, topic: str, route: str) -> None:
        self.pubsub = pubsub
        self.topic = topic
        self.route = route
        where = f"route {route!r}" if route else "the default route"
        super().__init__(
            f"pubsub {pubsub!r} topic {topic!r} already has a handler for {where};"
            " each (pubsub, topic, route) takes one handler"
        )


class AbortCall(Exception):
    """Raise from a handler to end the call with ``code`` and ``details`` (and optional
    ``trailers``, a mapping of metadata key to value or list of values, validated like
    :class:`~grpc_channel.metadata.Metadata`).

    ``code`` must be a ``grpc.StatusCode`` other than ``OK`` (``TypeError``/``ValueError``
    otherwise). From a topic handler the code goes to the wire instead of a TopicEventResponse:
    Dapr drops the event on ``UNIMPLEMENTED`` and retries it on any other code.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailers: Mapping[str, object] | None = None,
    ) -> None:
        if not isinstance(code, grpc.StatusCode):
            raise TypeError(f"AbortCall code must be a grpc.StatusCode, got {type(code).__name__}")
        if code is grpc.StatusCode.OK:
            raise ValueError("AbortCall code must be an error code, not grpc.StatusCode.OK")
        if not isinstance(details, str):
            raise TypeError(f"AbortCall details must be str, got {type(details).__name__}")
        super().__init__(code, details)
        self.code = code
        self.details = details
        self.trailers: Mapping[str, object] = dict(trailers or {})

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details}"
