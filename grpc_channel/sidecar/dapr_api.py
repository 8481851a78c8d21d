"""The sidecar's Dapr API: the part of ``dapr.proto.runtime.v1.Dapr`` a Dapr client needs for
service invocation and pub/sub, served on the sidecar's port ahead of the transparent proxy.

:class:`DaprApi` answers, at Dapr's method paths and with Dapr's messages (field numbers):

``InvokeService`` (``InvokeServiceRequest`` -> ``common.v1.InvokeResponse``)
    ``id`` names the app, ``message`` is the ``InvokeRequest`` for its ``OnInvoke``. The own app
    id goes to the own app's ``AppCallback/OnInvoke`` (through the sidecar's app channel: its
    app token and concurrency limit); any other id forwards the ``InvokeService`` call to that
    app's sidecar (found by the resolver; the peer token; ``dapr-caller-app-id`` and
    ``dapr-callee-app-id`` as the proxy sends them), whose Dapr API then delivers it to its own
    app. A call another sidecar forwarded (it carries ``dapr-callee-app-id``) is only ever
    delivered to the own app (another id: INVALID_ARGUMENT), so calls never loop between
    sidecars. An unknown id is NOT_FOUND naming it; an empty id INVALID_ARGUMENT. The app's errors
    come back with their code, message and trailers (``grpc-status-details-bin`` included).
    The caller's deadline travels on every hop. The caller's metadata is forwarded as the proxy
    forwards it (:mod:`grpc_channel.sidecar._routing`): the transport's keys, ``grpc-*``, the
    caller's ``dapr-api-token`` and the routing keys are dropped. As Dapr does, the app's
    response headers come back as the call's headers and its trailers as the call's trailers
    (on errors too), without the transport's keys and the hop keys (``dapr-api-token``,
    ``dapr-app-id``, ``dapr-caller-app-id``, ``dapr-callee-app-id``: they describe one hop, and
    an app echoing its token must not hand it to the caller).
``PublishEvent`` (``PublishEventRequest`` -> ``google.protobuf.Empty``)
    Through the sidecar's pub/sub runtime (:meth:`PubSubRuntime.publish
    <grpc_channel.pubsub.runtime.PubSubRuntime.publish>`), which wraps the data in a CloudEvent
    unless the metadata says ``rawPayload: "true"``. Dapr's codes: no component configured is
    FAILED_PRECONDITION; an empty pubsub name, an unknown one (the message names it and the
    configured ones) or an empty topic is INVALID_ARGUMENT; a broker failure is INTERNAL.
``GetMetadata`` (``GetMetadataRequest`` -> ``GetMetadataResponse``)
    The app id, the registered components (name, type, version), the subscriptions being
    delivered (pubsub, topic, metadata, rules with the default route last as a rule without a
    match, dead-letter topic, declarative or programmatic), how the app is reached (port,
    ``grpc``, host, its concurrency limit; 0 = none) and :data:`RUNTIME_VERSION`. Everything
    else (actors, HTTP endpoints, extended metadata, features) stays empty.

With the ``call_app`` of :func:`sidecar_call_app`, every API call that passes the token check,
decodes and names a target is let in by :meth:`Sidecar.admit
<grpc_channel.sidecar.proxy.Sidecar.admit>`: it counts against the sidecar's ``max_in_flight``
with the proxied calls (one more is RESOURCE_EXHAUSTED naming the cap) and is reported to the
sidecar's observer once, as the method path (``/dapr.proto.runtime.v1.Dapr/InvokeService``, ...)
with the target app id (``InvokeService``: the ``id`` asked for; ``PublishEvent`` and
``GetMetadata``: this sidecar's app), so its spans and metrics cover the Dapr API. The app call
an ``InvokeService`` makes uses that same place (it is not counted twice) and carries the
observer's trace context. The app's concurrency limit and the message-size limits apply too.

Every call must carry the sidecar's API token as ``dapr-api-token`` when one is set (the proxy's
rule and code: constant time; missing, repeated or wrong is UNAUTHENTICATED); it is never
forwarded. Any other method of the Dapr service is answered UNIMPLEMENTED naming it, never
proxied to an app as if it were an app's method.

Wire it with ``sidecar.add_services(api.handler())`` (:meth:`Sidecar.add_services
<grpc_channel.sidecar.proxy.Sidecar.add_services>`) before the sidecar starts;
:func:`sidecar_call_app` makes the ``call_app`` of a sidecar.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata as _dist
from typing import Any, Final, Protocol, Unpack

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from grpc_channel.appcallback import ON_INVOKE
from grpc_channel.interceptors import MetadataPairs
from grpc_channel.metadata import RESERVED_KEYS
from grpc_channel.pubsub.brokers.base import BrokerArgumentError, BrokerError
from grpc_channel.pubsub.cloudevents import CloudEventError
from grpc_channel.pubsub.routing import Rule
from grpc_channel.pubsub.runtime import (
    PubSubRuntimeError,
    RuntimeStoppedError,
    UnknownPubSubError,
)
from grpc_channel.pubsub.subscriptions import Subscription
from grpc_channel.pubsub.wire import DAPR_SERVICE, PUBLISH_EVENT
from grpc_channel.v1 import runtime_pb2

from ._routing import (
    APP_ID_KEY,
    CALLEE_KEY,
    CALLER_KEY,
    RouteRefused,
    check_caller_token,
    response_metadata,
)
from .proxy import AdmittedCall, Sidecar, UnaryCallOptions, UnaryReply
from .tokens import TOKEN_KEY, check_token_value

__all__ = [
    "DAPR_SERVICE",
    "GET_METADATA",
    "INVOKE_SERVICE",
    "PUBLISH_EVENT",
    "RUNTIME_VERSION",
    "AppConnection",
    "CallApp",
    "ComponentInfo",
    "DaprApi",
    "Publisher",
    "sidecar_call_app",
]

INVOKE_SERVICE: Final = f"/{DAPR_SERVICE}/InvokeService"
GET_METADATA: Final = f"/{DAPR_SERVICE}/GetMetadata"
_PREFIX: Final = f"/{DAPR_SERVICE}/"
_SERVED: Final = ("InvokeService", "PublishEvent", "GetMetadata")


def _runtime_version() -> str:
    try:
        return f"grpc-channel/{_dist.version('grpc-channel')}"
    except _dist.PackageNotFoundError:  # running from a source tree that is not installed
        return "grpc-channel/unknown"


RUNTIME_VERSION: Final = _runtime_version()
"""What ``GetMetadata`` reports as ``runtime_version``: ``grpc-channel/<version>``."""

_NO_DEADLINE: Final = 1e8  # grpc reports "no deadline" as a huge time remaining
_ROUTING_KEYS: Final = frozenset({TOKEN_KEY, APP_ID_KEY, CALLEE_KEY, CALLER_KEY})

_Context = grpc.aio.ServicerContext[bytes, bytes]


class CallApp(Protocol):
    """One unary call to app ``app_id`` with raw bytes: the reply (bytes, or a
    :class:`~grpc_channel.sidecar.proxy.UnaryReply` with the app's headers and trailers, which
    ``InvokeService`` then passes back), or a ``grpc.RpcError`` (its ``initial_metadata()`` and
    ``trailing_metadata()``, when it has them, are passed back too).

    The ``options`` (:class:`~grpc_channel.sidecar.proxy.UnaryCallOptions`, each may be left
    out): ``metadata`` to send (default ``()``); ``caller``, the app id the call comes from when
    another sidecar forwarded it (``None``: a client of this sidecar); ``timeout`` in seconds
    (``None``: no deadline); ``admission``, given only by a :class:`DaprApi` whose ``call_app``
    also has an ``admit`` method (as the one of :func:`sidecar_call_app` has: :meth:`Sidecar.admit
    <grpc_channel.sidecar.proxy.Sidecar.admit>`): the API call this app call is made for.
    """

    async def __call__(
        self, app_id: str, method: str, request: bytes, **options: Unpack[UnaryCallOptions]
    ) -> bytes | UnaryReply: ...


#: What ``call_app.admit`` is, when a ``call_app`` has one: :meth:`Sidecar.admit
#: <grpc_channel.sidecar.proxy.Sidecar.admit>` (method path, target app id, caller metadata).
_Admit = Callable[[str, str, MetadataPairs], AdmittedCall]


class Publisher(Protocol):
    """What ``PublishEvent`` publishes through: a
    :class:`~grpc_channel.pubsub.runtime.PubSubRuntime`."""

    async def publish(
        self,
        pubsub: str,
        topic: str,
        data: bytes | str | object,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str: ...


@dataclass(frozen=True)
class ComponentInfo:
    """A registered component as ``GetMetadata`` lists it: ``name`` (the pubsub name),
    ``type`` (``pubsub.redis``, ...) and ``version`` (``v1``)."""

    name: str
    type: str
    version: str = ""


@dataclass(frozen=True)
class AppConnection:
    """How the sidecar reaches its app, for ``GetMetadata``: ``port``, ``host`` and the
    concurrency limit (``None``: no limit, reported as 0 as Dapr does). The protocol is gRPC."""

    port: int
    host: str = "127.0.0.1"
    max_concurrency: int | None = None


def sidecar_call_app(sidecar: Sidecar) -> CallApp:
    """The ``call_app`` of ``sidecar``: every id through :meth:`Sidecar.unary_call
    <grpc_channel.sidecar.proxy.Sidecar.unary_call>` (the own id through the app channel: app
    token, concurrency limit; another id through its sidecar: resolver, peer token,
    caller/callee ids), with the app's headers and trailers. A ``caller`` (a call another
    sidecar forwarded) is honoured as the proxy honours ``dapr-caller-app-id``: the own app
    sees it. Its ``admit`` is the sidecar's :meth:`~grpc_channel.sidecar.proxy.Sidecar.admit`,
    so a :class:`DaprApi` built on it caps and reports its calls as the proxy's. Anything but a
    :class:`~grpc_channel.sidecar.proxy.Sidecar` raises TypeError.
    """
    return _SidecarCallApp(sidecar)


class _SidecarCallApp:
    """:func:`sidecar_call_app`'s ``call_app``: calls and admissions through one sidecar."""

    __slots__ = ("_sidecar",)

    def __init__(self, sidecar: Sidecar) -> None:
        if not isinstance(sidecar, Sidecar):
            raise TypeError(f"sidecar_call_app takes a Sidecar, got {type(sidecar).__name__}")
        self._sidecar = sidecar

    def __repr__(self) -> str:
        return f"sidecar_call_app({self._sidecar.app_id!r})"

    async def __call__(
        self, app_id: str, method: str, request: bytes, **options: Unpack[UnaryCallOptions]
    ) -> UnaryReply:
        return await self._sidecar.unary_call(app_id, method, request, **options)

    def admit(self, method: str, target_app: str, incoming: MetadataPairs) -> AdmittedCall:
        return self._sidecar.admit(method, target_app, incoming)


class _Refusal(Exception):
    """End the call with ``code`` and ``message`` (after ``headers``, with ``trailers``)."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        trailers: MetadataPairs = (),
        headers: MetadataPairs = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.trailers = trailers
        self.headers = headers


class _ApiCall:
    """One Dapr API call: its admission by the sidecar (when the API has one to ask), ended
    exactly once with the caller's status."""

    __slots__ = ("_admit", "_context", "_method", "admission")

    def __init__(self, admit: _Admit | None, method: str, context: _Context) -> None:
        self._admit = admit
        self._method = method
        self._context = context
        self.admission: AdmittedCall | None = None

    def admit(self, target: str) -> None:
        """Count the call and report it (target app ``target``); RESOURCE_EXHAUSTED past the
        cap. Once per call, after the checks that refuse a call before it is let in."""
        if self._admit is None:
            return
        incoming: MetadataPairs = tuple(self._context.invocation_metadata() or ())
        try:
            self.admission = self._admit(self._method, target, incoming)
        except grpc.RpcError as err:
            raise _from_rpc_error(err) from None

    def end(self, code: grpc.StatusCode) -> None:
        if self.admission is not None:
            self.admission.end(code)


def _reply_metadata(pairs: Any) -> MetadataPairs:
    """The app's headers or trailers as the caller gets them: not the transport's keys
    (:func:`response_metadata`), not the hop keys (the token among them)."""
    return tuple((k, v) for k, v in response_metadata(pairs) if k not in _ROUTING_KEYS)


def _forwardable(pairs: MetadataPairs) -> MetadataPairs:
    """The caller's metadata the next hop may see: not the transport's keys, not ``grpc-*``, not
    the caller's token, not the routing keys (the next hop gets its own)."""
    return tuple(
        (k, v)
        for k, v in pairs
        if not k.startswith((":", "grpc-")) and k not in RESERVED_KEYS and k not in _ROUTING_KEYS
    )


def _single(pairs: MetadataPairs, key: str) -> str | None:
    values = [v for k, v in pairs if k == key]
    if len(values) == 1 and isinstance(values[0], str) and values[0].strip():
        return values[0].strip()
    return None


def _timeout(context: _Context) -> float | None:
    remaining = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE:
        return None
    return max(remaining, 0.0)


def _parse(message_cls: type[Any], request: bytes, what: str) -> Any:
    message = message_cls()
    try:
        message.ParseFromString(request)
    except DecodeError as err:
        raise _Refusal(
            grpc.StatusCode.INVALID_ARGUMENT, f"{what}: the request is not a valid {what} ({err})"
        ) from None
    return message


def _from_rpc_error(err: grpc.RpcError) -> _Refusal:
    """The caller's status from a failed upstream call: its code, details, headers and
    trailers."""
    code_of = getattr(err, "code", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    details_of = getattr(err, "details", None)
    details = details_of() if callable(details_of) else str(err)
    trailers_of = getattr(err, "trailing_metadata", None)
    trailers = _reply_metadata(trailers_of() if callable(trailers_of) else None)
    headers_of = getattr(err, "initial_metadata", None)
    headers = _reply_metadata(headers_of() if callable(headers_of) else None)
    if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
        code = grpc.StatusCode.UNKNOWN
    return _Refusal(code, details or "", trailers, headers)


def _subscription_pb(subscription: Subscription) -> runtime_pb2.PubsubSubscription:
    rules: list[Rule] = list(subscription.routes.rules)
    if subscription.routes.default:
        # Dapr keeps the default route as its last rule, one without a match.
        rules.append(Rule(match="", path=subscription.routes.default))
    return runtime_pb2.PubsubSubscription(
        pubsub_name=subscription.pubsub_name,
        topic=subscription.topic,
        metadata=dict(subscription.metadata),
        rules=runtime_pb2.PubsubSubscriptionRules(
            rules=[runtime_pb2.PubsubSubscriptionRule(match=r.match, path=r.path) for r in rules]
        ),
        dead_letter_topic=subscription.dead_letter_topic,
        type=(
            runtime_pb2.DECLARATIVE
            if subscription.source == "declarative"
            else runtime_pb2.PROGRAMMATIC
        ),
    )


class DaprApi:
    """The Dapr API of the sidecar of app ``app_id`` (see the module docs for the rules).

    - ``call_app``: how calls reach an app by id (:func:`sidecar_call_app` of the sidecar; a
      ``call_app`` with an ``admit`` method has every API call let in through it, see the
      module docs);
    - ``publisher``: what ``PublishEvent`` publishes through (default None: no pub/sub);
    - ``api_token``: the token callers must present (default None: no check);
    - ``components``: the pub/sub components (:class:`ComponentInfo`, or bare names); a
      ``PublishEvent`` naming another pubsub is INVALID_ARGUMENT, with none FAILED_PRECONDITION;
    - ``subscriptions``: returns the subscriptions being delivered now (default: none);
    - ``app_connection``: how the app is reached, for ``GetMetadata`` (default: not reported).

    Bad arguments raise ``TypeError``/``ValueError`` naming them (never a token's value).
    """

    def __init__(
        self,
        app_id: str,
        *,
        call_app: CallApp,
        publisher: Publisher | None = None,
        api_token: str | None = None,
        components: Sequence[ComponentInfo | str] = (),
        subscriptions: Callable[[], Sequence[Subscription]] | None = None,
        app_connection: AppConnection | None = None,
    ) -> None:
        if not isinstance(app_id, str) or not app_id.strip() or app_id != app_id.strip():
            raise ValueError(f"app_id must be a non-empty id without blanks, got {app_id!r}")
        if not callable(call_app):
            raise TypeError(f"call_app must be callable, got {type(call_app).__name__}")
        if publisher is not None and not callable(getattr(publisher, "publish", None)):
            raise TypeError(
                f"publisher must have a publish() coroutine or be None, got "
                f"{type(publisher).__name__}"
            )
        infos: list[ComponentInfo] = []
        for component in components:
            if isinstance(component, str) and component:
                infos.append(ComponentInfo(component, "pubsub"))
            elif isinstance(component, ComponentInfo) and component.name:
                infos.append(component)
            else:
                raise TypeError(
                    f"components must hold ComponentInfo or non-empty names, got {component!r}"
                )
        if subscriptions is not None and not callable(subscriptions):
            raise TypeError("subscriptions must be a callable returning subscriptions, or None")
        self.app_id = app_id
        self._call_app = call_app
        admit = getattr(call_app, "admit", None)
        self._admit: _Admit | None = admit if callable(admit) else None
        self._publisher = publisher
        self._api_token = check_token_value(api_token, "api_token")
        self._components = tuple(infos)
        self._pubsubs = frozenset(info.name for info in infos)
        self._subscriptions = subscriptions
        self._app_connection = app_connection

    def __repr__(self) -> str:
        return f"DaprApi({self.app_id!r}, components={[c.name for c in self._components]})"

    def handler(self) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
        """The handler to give :meth:`Sidecar.add_services`: it claims every method of the Dapr
        service and nothing else."""
        return _Handler(self)

    # -- the methods -------------------------------------------------------------------------------

    async def invoke_service(self, request: bytes, context: _Context) -> bytes:
        """``InvokeService``: the app's ``InvokeResponse`` bytes (its headers and trailers
        passed back)."""
        return await self._guarded(INVOKE_SERVICE, self._invoke_service, request, context)

    async def publish_event(self, request: bytes, context: _Context) -> bytes:
        """``PublishEvent``: an empty message once the broker took the event."""
        return await self._guarded(PUBLISH_EVENT, self._publish_event, request, context)

    async def get_metadata(self, request: bytes, context: _Context) -> bytes:
        """``GetMetadata``: this sidecar's ``GetMetadataResponse``."""
        return await self._guarded(GET_METADATA, self._get_metadata, request, context)

    async def unimplemented(self, method: str, context: _Context) -> None:
        """Any other Dapr ``method`` (any call shape): UNIMPLEMENTED naming it, after the token
        check (an unauthenticated caller learns nothing about what is served)."""
        try:
            self._check_token(context)
        except _Refusal as refusal:
            await context.abort(refusal.code, refusal.message)
            return
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{method} is not served by this sidecar; its Dapr API serves {', '.join(_SERVED)}",
        )

    async def _guarded(
        self,
        path: str,
        method: Callable[[bytes, _Context, _ApiCall], Any],
        request: bytes,
        context: _Context,
    ) -> bytes:
        """Run ``method`` (served at ``path``) after the token check; a refusal ends the call
        with its status, and the admission (if ``method`` was let in) ends exactly once with the
        status the caller gets."""
        call = _ApiCall(self._admit, path, context)
        try:
            self._check_token(context)
            reply: bytes = await method(request, context, call)
        except _Refusal as refusal:
            call.end(refusal.code)
            if refusal.headers:
                await context.send_initial_metadata(refusal.headers)
            await context.abort(refusal.code, refusal.message, refusal.trailers)
            raise AssertionError("unreachable: abort raises") from None
        except asyncio.CancelledError:  # the caller went away, or the server is stopping
            call.end(grpc.StatusCode.CANCELLED)
            raise
        except BaseException:
            call.end(grpc.StatusCode.UNKNOWN)
            raise
        call.end(grpc.StatusCode.OK)
        return reply

    def _check_token(self, context: _Context) -> None:
        try:
            check_caller_token(tuple(context.invocation_metadata() or ()), self._api_token)
        except RouteRefused as refused:
            raise _Refusal(refused.code, refused.message) from None

    async def _invoke_service(self, request: bytes, context: _Context, call: _ApiCall) -> bytes:
        parsed: runtime_pb2.InvokeServiceRequest = _parse(
            runtime_pb2.InvokeServiceRequest, request, "InvokeServiceRequest"
        )
        target = parsed.id.strip()
        if not target:
            raise _Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                "InvokeServiceRequest.id is empty: set it to the app id to call",
            )
        incoming: MetadataPairs = tuple(context.invocation_metadata() or ())
        forwarded_by_peer = any(k == CALLEE_KEY for k, _ in incoming)
        caller: str | None = None
        if forwarded_by_peer:
            # Another sidecar forwarded this call to us: it is for our app, never to pass on
            # (which could loop between sidecars).
            if target != self.app_id:
                raise _Refusal(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"InvokeService for app {target!r} was forwarded to the sidecar of "
                    f"{self.app_id!r}",
                )
            caller = _single(incoming, CALLER_KEY)
        call.admit(target)
        options: UnaryCallOptions = {
            "metadata": _forwardable(incoming),
            "timeout": _timeout(context),
        }
        if call.admission is not None:  # only then: a call_app without admit() may not take it
            options["admission"] = call.admission
        try:
            if target == self.app_id:
                body = parsed.message.SerializeToString()
                options["caller"] = caller
                result = await self._call_app(target, ON_INVOKE, body, **options)
            else:
                result = await self._call_app(target, INVOKE_SERVICE, request, **options)
        except grpc.RpcError as err:
            raise _from_rpc_error(err) from None
        except (ValueError, TypeError) as err:  # refused locally (a malformed id, say)
            raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None
        if not isinstance(result, UnaryReply):
            return result
        # Dapr passes the app's response headers back as headers and its trailers as trailers.
        headers = _reply_metadata(result.headers)
        if headers:
            await context.send_initial_metadata(headers)
        trailers = _reply_metadata(result.trailers)
        if trailers:
            context.set_trailing_metadata(trailers)
        return result.reply

    async def _publish_event(self, request: bytes, context: _Context, call: _ApiCall) -> bytes:
        parsed: runtime_pb2.PublishEventRequest = _parse(
            runtime_pb2.PublishEventRequest, request, "PublishEventRequest"
        )
        call.admit(self.app_id)
        pubsub, topic = parsed.pubsub_name, parsed.topic
        if not self._pubsubs or self._publisher is None:
            raise _Refusal(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"no pubsub is configured (start the sidecar with --components); "
                f"asked for {pubsub!r}",
            )
        if not pubsub:
            raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, "pubsub name is empty")
        if pubsub not in self._pubsubs:
            raise _Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"pubsub {pubsub!r} not found (configured: {', '.join(sorted(self._pubsubs))})",
            )
        if not topic:
            raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"topic is empty in pubsub {pubsub!r}")
        try:
            await self._publisher.publish(
                pubsub,
                topic,
                parsed.data,
                content_type=parsed.data_content_type or None,
                metadata=dict(parsed.metadata) or None,
            )
        except UnknownPubSubError as err:
            raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None
        except (CloudEventError, BrokerArgumentError) as err:
            raise _Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"cannot publish to topic {topic!r} in pubsub {pubsub!r}: {err}",
            ) from None
        except BrokerError as err:
            raise _Refusal(
                grpc.StatusCode.INTERNAL,
                f"error when publishing to topic {topic!r} in pubsub {pubsub!r}: {err}",
            ) from None
        except (RuntimeStoppedError, PubSubRuntimeError) as err:
            raise _Refusal(grpc.StatusCode.UNAVAILABLE, str(err)) from None
        return b""  # google.protobuf.Empty

    async def _get_metadata(self, request: bytes, context: _Context, call: _ApiCall) -> bytes:
        _parse(runtime_pb2.GetMetadataRequest, request, "GetMetadataRequest")
        call.admit(self.app_id)
        response = runtime_pb2.GetMetadataResponse(
            id=self.app_id,
            registered_components=[
                runtime_pb2.RegisteredComponents(name=c.name, type=c.type, version=c.version)
                for c in self._components
            ],
            subscriptions=[
                _subscription_pb(s)
                for s in (self._subscriptions() if self._subscriptions is not None else ())
            ],
            runtime_version=RUNTIME_VERSION,
        )
        connection = self._app_connection
        if connection is not None:
            response.app_connection_properties.CopyFrom(
                runtime_pb2.AppConnectionProperties(
                    port=connection.port,
                    protocol="grpc",
                    channel_address=connection.host,
                    max_concurrency=connection.max_concurrency or 0,
                )
            )
        return response.SerializeToString()


class _Handler(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Claims the Dapr service's paths: the served ones, and UNIMPLEMENTED for the rest."""

    def __init__(self, api: DaprApi) -> None:
        self._served: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            INVOKE_SERVICE: grpc.unary_unary_rpc_method_handler(api.invoke_service),
            PUBLISH_EVENT: grpc.unary_unary_rpc_method_handler(api.publish_event),
            GET_METADATA: grpc.unary_unary_rpc_method_handler(api.get_metadata),
        }
        self._api = api

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = details.method
        served = self._served.get(method)
        if served is not None:
            return served
        if not method.startswith(_PREFIX):
            return None  # not the Dapr API: the proxy's
        api = self._api

        # Raw bytes, bidi: answers a call of any shape (the wire does not tell them apart).
        async def refuse(requests: AsyncIterator[bytes], context: _Context) -> None:
            await api.unimplemented(method, context)

        return grpc.stream_stream_rpc_method_handler(refuse)
