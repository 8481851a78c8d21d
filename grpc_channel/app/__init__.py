"""The app-side SDK: write a Dapr application with this toolkit and serve it on sync gRPC or on
``grpc.aio``. See :mod:`grpc_channel.app.app` for the whole story.

- :class:`App`: ``@app.subscribe``, ``@app.method``, ``@app.health_check``; ``run``/``start``/
  ``stop`` and ``serve_async``/``start_async``/``stop_async``.
- :class:`TopicEvent` and :class:`TopicEventStatus`: what a topic handler gets and answers.
- :class:`MethodRequest` and :class:`MethodResponse`: what a method handler gets and may answer.
- :class:`AbortCall`: raise it to end a call with a status of your choosing.
- :class:`RegistrationError`, :class:`DuplicateRouteError`: bad registrations.
"""

from __future__ import annotations

from grpc_channel.app.app import APP_TOKEN_ENV, DEFAULT_MAX_WORKERS, App
from grpc_channel.app.errors import AbortCall, DuplicateRouteError, RegistrationError
from grpc_channel.app.event import TopicEvent, TopicEventStatus
from grpc_channel.app.request import MethodRequest, MethodResponse
from grpc_channel.app.subscriptions import Subscriptions, TopicHandler

__all__ = [
    "APP_TOKEN_ENV",
    "DEFAULT_MAX_WORKERS",
    "AbortCall",
    "App",
    "DuplicateRouteError",
    "MethodRequest",
    "MethodResponse",
    "RegistrationError",
    "Subscriptions",
    "TopicEvent",
    "TopicEventStatus",
    "TopicHandler",
]
