"""The sidecar's Dapr API (:mod:`grpc_channel.sidecar.dapr_api`), in process, with the dapr SDK's
``DaprClient`` and plain grpcio stubs as callers.

The module's mesh, every server on 127.0.0.1 (the sidecars on one background loop)::

    caller -> sidecar "own"  (OWN)  -> our grpc_channel App (pub/sub runtime, in-memory broker)
    caller -> sidecar "dapr" (DAPR) -> the dapr SDK's App (support_dapr_app, its own process)

Each sidecar names the other as a peer; both demand :data:`CLUSTER` from callers and present it
to each other, and present :data:`APP_SECRET` to their app.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import pytest
from dapr.proto.runtime.v1 import metadata_pb2 as dapr_metadata
from grpc_status import rpc_status
from support_dapr_app import DaprApp
from support_harness import bad_request_detail, free_port, wait_until
from support_sidecar import LoopThread, loop_thread

from grpc_channel.aio import dial as aio_dial
from grpc_channel.app import AbortCall, App, MethodRequest, MethodResponse, TopicEvent
from grpc_channel.dial_options import with_app_token, with_insecure
from grpc_channel.interceptors import MetadataPairs
from grpc_channel.pubsub.brokers import MemoryBroker
from grpc_channel.pubsub.runtime import PubSubRuntime
from grpc_channel.sidecar import PeersResolver, Sidecar, SidecarHttp
from grpc_channel.sidecar.dapr_api import (
    GET_METADATA,
    INVOKE_SERVICE,
    PUBLISH_EVENT,
    RUNTIME_VERSION,
    AppConnection,
    ComponentInfo,
    DaprApi,
    sidecar_call_app,
)
from grpc_channel.v1 import common_pb2, runtime_pb2

CLUSTER = "cluster-secret"
APP_SECRET = "app-secret"
OWN, DAPR = "own", "dapr"
_DAPR_SERVICE = "/dapr.proto.runtime.v1.Dapr/"


@dataclass
class World:
    loop: LoopThread
    targets: dict[str, str]  # app id -> its sidecar's address
    http_port: int
    own_app_port: int
    events: list[TopicEvent] = field(default_factory=list)
    sidecars: dict[str, Sidecar] = field(default_factory=dict)


def _own_app(events: list[TopicEvent]) -> App:
    app = App(app_token=APP_SECRET)
    lock = threading.Lock()

    @app.method("echo")
    def echo(request: MethodRequest) -> MethodResponse:
        return MethodResponse(data=request.data, content_type=request.content_type)

    @app.method("headers")
    def headers(request: MethodRequest) -> MethodResponse:
        # Hop keys among the app's own: the sidecar must not pass those back.
        return MethodResponse(
            data=request.data,
            headers={"x-own-header": "own", "dapr-api-token": APP_SECRET, "dapr-app-id": OWN},
            trailers={"x-own-trailer": "own", "dapr-caller-app-id": OWN},
        )

    @app.method("refuse")
    def refuse(request: MethodRequest) -> None:
        raise AbortCall(grpc.StatusCode.FAILED_PRECONDITION, "no stock", {"x-why": "stock"})

    @app.subscribe("pubsub", "orders", dead_letter_topic="orders-dead")
    def orders(event: TopicEvent) -> None:
        with lock:
            events.append(event)

    @app.subscribe("pubsub", "orders", match='event.type == "big"', route="/orders/big")
    def big(event: TopicEvent) -> None:
        with lock:
            events.append(event)

    return app


async def _start_own(
    app_port: int, port: int, peers: dict[str, str]
) -> tuple[Sidecar, PubSubRuntime, Any]:
    """Sidecar "own" with its Dapr API and a pub/sub runtime on its own app channel."""
    sidecar = Sidecar(
        OWN,
        resolver=PeersResolver(peers=peers, environ={}),
        app_address=f"127.0.0.1:{app_port}",
        api_token=CLUSTER,
        app_token=APP_SECRET,
        peer_token=CLUSTER,
    )
    channel = await aio_dial(f"127.0.0.1:{app_port}", with_insecure(), with_app_token(APP_SECRET))
    runtime = PubSubRuntime(channel, {"pubsub": MemoryBroker()}, app_id=OWN)
    api = DaprApi(
        OWN,
        call_app=sidecar_call_app(sidecar),
        publisher=runtime,
        api_token=CLUSTER,
        components=[ComponentInfo("pubsub", "pubsub.in-memory", "v1")],
        subscriptions=lambda: runtime.subscriptions,
        app_connection=AppConnection(app_port, "127.0.0.1", 4),
    )
    sidecar.add_services(api.handler())
    await sidecar.start(port)
    await runtime.start()
    return sidecar, runtime, channel


async def _start_dapr(app_port: int, port: int, peers: dict[str, str]) -> Sidecar:
    """Sidecar "dapr" with its Dapr API and no pub/sub."""
    sidecar = Sidecar(
        DAPR,
        resolver=PeersResolver(peers=peers, environ={}),
        app_address=f"127.0.0.1:{app_port}",
        api_token=CLUSTER,
        app_token=APP_SECRET,
        peer_token=CLUSTER,
    )
    api = DaprApi(DAPR, call_app=sidecar_call_app(sidecar), api_token=CLUSTER)
    sidecar.add_services(api.handler())
    await sidecar.start(port)
    return sidecar


@pytest.fixture(scope="module")
def world(dapr_app: DaprApp) -> Iterator[World]:
    events: list[TopicEvent] = []
    app = _own_app(events)
    own_app_port = app.start(0)
    http = SidecarHttp(healthy=lambda: True)  # what DaprClient probes before its first call
    try:
        http_port = http.start()
        with loop_thread() as loop:
            ports = {OWN: free_port(), DAPR: free_port()}
            peers = {app_id: f"127.0.0.1:{port}" for app_id, port in ports.items()}
            own, runtime, channel = loop.run(_start_own(own_app_port, ports[OWN], peers))
            try:
                dapr = loop.run(_start_dapr(dapr_app.port, ports[DAPR], peers))
                try:
                    sidecars = {OWN: own, DAPR: dapr}
                    yield World(loop, peers, http_port, own_app_port, events, sidecars)
                finally:
                    loop.run(dapr.stop(None))
            finally:
                loop.run(runtime.stop(5))
                loop.run(own.stop(None))
                loop.run(channel.close())
    finally:
        http.stop()
        app.stop()


@contextlib.contextmanager
def dapr_client(
    world: World, monkeypatch: pytest.MonkeyPatch, via: str, token: str | None = CLUSTER
) -> Iterator[Any]:
    """The dapr SDK's DaprClient pointed at the sidecar of app ``via``."""
    from dapr.clients import DaprClient

    if token is None:
        monkeypatch.delenv("DAPR_API_TOKEN", raising=False)
    else:
        monkeypatch.setenv("DAPR_API_TOKEN", token)
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    monkeypatch.setenv("DAPR_RUNTIME_HOST", "127.0.0.1")
    monkeypatch.setenv("DAPR_HTTP_PORT", str(world.http_port))
    monkeypatch.setenv("DAPR_HEALTH_TIMEOUT", "10")
    with DaprClient(address=world.targets[via]) as client:
        yield client


def _raw(
    world: World, via: str, method: str, request: bytes, token: str | None = CLUSTER, **kw: Any
) -> bytes:
    """One unary call of a Dapr API ``method`` with a plain grpcio channel; the reply bytes."""
    metadata = [*kw.pop("metadata", ())]
    if token is not None:
        metadata.append(("dapr-api-token", token))
    with grpc.insecure_channel(world.targets[via]) as channel:
        reply: bytes = channel.unary_unary(method)(
            request, metadata=metadata, timeout=kw.pop("timeout", 10.0)
        )
        return reply


def _invoke_request(app_id: str, method: str, data: bytes = b"") -> bytes:
    message = common_pb2.InvokeRequest(method=method, content_type="text/plain")
    message.data.value = data
    return runtime_pb2.InvokeServiceRequest(id=app_id, message=message).SerializeToString()


def _app_data(reply: bytes) -> bytes:
    return common_pb2.InvokeResponse.FromString(reply).data.value


# -- InvokeService ---------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:invoke_method with protocol gRPC is deprecated")
@pytest.mark.parametrize(
    ("via", "app_id"),
    [(OWN, OWN), (DAPR, DAPR), (OWN, DAPR), (DAPR, OWN)],
    ids=["own-app", "dapr-app", "two-hops-to-dapr-app", "two-hops-to-own-app"],
)
def test_dapr_client_invokes_our_app_and_the_sdk_app(
    world: World, monkeypatch: pytest.MonkeyPatch, via: str, app_id: str
) -> None:
    with dapr_client(world, monkeypatch, via) as client:
        reply = client.invoke_method(app_id, "echo", data=b"hello", content_type="text/plain")
    assert reply.data == b"hello"
    assert reply.content_type == "text/plain"


@pytest.mark.parametrize(("via", "caller"), [(DAPR, DAPR), (OWN, OWN)], ids=["one-hop", "two"])
def test_the_app_sees_the_app_token_the_caller_and_forwarded_metadata_never_the_callers_token(
    world: World, via: str, caller: str
) -> None:
    reply = _raw(
        world,
        via,
        INVOKE_SERVICE,
        _invoke_request(DAPR, "metadata"),
        metadata=[
            ("x-order", "42"),
            ("dapr-app-id", "elsewhere"),
            ("dapr-caller-app-id", "forged"),
        ],
    )
    seen: dict[str, list[str]] = json.loads(_app_data(reply))
    assert seen["dapr-api-token"] == [APP_SECRET]
    assert seen["dapr-caller-app-id"] == [caller]
    assert seen["x-order"] == ["42"]
    assert "dapr-app-id" not in seen
    assert not any(CLUSTER in value for values in seen.values() for value in values)


@pytest.mark.filterwarnings("ignore:invoke_method with protocol gRPC is deprecated")
@pytest.mark.parametrize("via", [DAPR, OWN], ids=["one-hop", "two-hops"])
def test_dapr_client_gets_the_apps_response_headers(
    world: World, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    with dapr_client(world, monkeypatch, via) as client:
        reply = client.invoke_method(DAPR, "echo", data=b"hi", content_type="text/plain")
    assert reply.data == b"hi"
    assert reply.headers.get("x-app-header") == ["dapr"]


@pytest.mark.parametrize(("via", "app_id"), [(OWN, OWN), (DAPR, OWN), (DAPR, DAPR)])
def test_invoke_service_passes_back_the_apps_headers_and_trailers_but_no_hop_keys(
    world: World, via: str, app_id: str
) -> None:
    method = "headers" if app_id == OWN else "echo"
    with grpc.insecure_channel(world.targets[via]) as channel:
        reply, call = channel.unary_unary(INVOKE_SERVICE).with_call(
            _invoke_request(app_id, method, b"x"),
            metadata=(("dapr-api-token", CLUSTER),),
            timeout=10,
        )
        headers, trailers = list(call.initial_metadata()), list(call.trailing_metadata())
    assert _app_data(reply) == b"x"
    mine = "own" if app_id == OWN else "dapr"
    assert (f"x-{mine}-header" if app_id == OWN else "x-app-header", mine) in headers
    assert (f"x-{mine}-trailer" if app_id == OWN else "x-app-trailer", mine) in trailers
    keys = {key for key, _ in (*headers, *trailers)}
    assert not keys & {"dapr-api-token", "dapr-app-id", "dapr-caller-app-id", "dapr-callee-app-id"}
    assert APP_SECRET not in [value for _, value in (*headers, *trailers)]


def test_a_call_forwarded_by_a_peer_holds_one_place_in_flight_at_each_sidecar(
    world: World, dapr_app: DaprApp
) -> None:
    # Through OWN to DAPR's app: each sidecar counts the call once while the app works on it.
    dapr_app.reset()
    sidecars = world.sidecars
    with grpc.insecure_channel(world.targets[OWN]) as channel:
        slow = channel.unary_unary(INVOKE_SERVICE).future(
            _invoke_request(DAPR, "sleep", b"5"),
            metadata=(("dapr-api-token", CLUSTER),),
            timeout=10,
        )
        assert wait_until(lambda: dapr_app.stats()["in_flight"] == 1, timeout=5)
        assert (sidecars[OWN].in_flight, sidecars[DAPR].in_flight) == (1, 1)
        slow.cancel()
    assert wait_until(lambda: sidecars[OWN].in_flight == sidecars[DAPR].in_flight == 0)


@pytest.mark.parametrize("via", [DAPR, OWN], ids=["one-hop", "two-hops"])
def test_the_callers_deadline_reaches_the_app(world: World, via: str) -> None:
    reply = _raw(world, via, INVOKE_SERVICE, _invoke_request(DAPR, "deadline"), timeout=7.0)
    left = json.loads(_app_data(reply))["time_remaining"]
    assert left is not None and 0 < left <= 7.5


@pytest.mark.parametrize("via", [DAPR, OWN], ids=["one-hop", "two-hops"])
def test_a_caller_that_gives_up_ends_the_apps_call_too(
    world: World, dapr_app: DaprApp, via: str
) -> None:
    dapr_app.reset()
    with pytest.raises(grpc.RpcError) as raised:
        _raw(world, via, INVOKE_SERVICE, _invoke_request(DAPR, "sleep", b"5"), timeout=0.5)
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]

    # The app's handler saw its call end (deadline or cancellation), long before its 5 s.
    def ended() -> bool:
        stats = dapr_app.stats()
        return stats["cancelled"] == 1 and stats["in_flight"] == 0

    assert wait_until(ended, timeout=4)


@pytest.mark.parametrize("via", [DAPR, OWN], ids=["one-hop", "two-hops"])
def test_app_errors_keep_their_status_and_details(world: World, via: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _raw(world, via, INVOKE_SERVICE, _invoke_request(DAPR, "fail"))
    err: Any = raised.value
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "name is required"
    status = rpc_status.from_call(err)
    assert status is not None and list(status.details) == [bad_request_detail()]


@pytest.mark.filterwarnings("ignore:invoke_method with protocol gRPC is deprecated")
def test_dapr_client_sees_our_apps_error_and_trailer(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    with dapr_client(world, monkeypatch, DAPR) as client, pytest.raises(grpc.RpcError) as raised:
        client.invoke_method(OWN, "refuse", data=b"x")
    err: Any = raised.value
    assert err.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == "no stock"
    assert ("x-why", "stock") in err.trailing_metadata()


@pytest.mark.parametrize("app_id", ["nobody", " "], ids=["unknown", "blank"])
def test_an_unknown_or_empty_app_id_is_refused_naming_it(world: World, app_id: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _raw(world, OWN, INVOKE_SERVICE, _invoke_request(app_id, "echo"))
    err: Any = raised.value
    if app_id.strip():
        assert err.code() is grpc.StatusCode.NOT_FOUND
        assert "'nobody'" in err.details()
    else:
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "InvokeServiceRequest.id" in err.details()


def test_a_call_forwarded_by_a_peer_is_never_forwarded_again(world: World) -> None:
    # As a peer sidecar forwards: dapr-callee-app-id names this sidecar's app, the id another.
    forwarded = [("dapr-callee-app-id", OWN), ("dapr-caller-app-id", DAPR)]
    with pytest.raises(grpc.RpcError) as raised:
        _raw(world, OWN, INVOKE_SERVICE, _invoke_request(DAPR, "echo"), metadata=forwarded)
    err: Any = raised.value
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "'dapr'" in err.details() and "forwarded" in err.details()


def test_a_request_that_does_not_decode_is_invalid_argument(world: World) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _raw(world, OWN, INVOKE_SERVICE, b"\xff\xff\xff")
    err: Any = raised.value
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "InvokeServiceRequest" in err.details()


# -- PublishEvent ----------------------------------------------------------------------------------


def test_dapr_client_publish_reaches_the_subscriber_as_a_cloud_event(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.events.clear()
    with dapr_client(world, monkeypatch, OWN) as client:
        client.publish_event(
            "pubsub", "orders", json.dumps({"n": 1}), data_content_type="application/json"
        )
        client.publish_event(
            "pubsub", "orders", b"\x00raw", publish_metadata={"rawPayload": "true"}
        )
    assert wait_until(lambda: len(world.events) == 2)
    cloud, raw = sorted(world.events, key=lambda e: e.data_content_type)
    assert cloud.topic == "orders" and cloud.source == OWN
    assert json.loads(cloud.data) == {"n": 1} and cloud.data_content_type == "application/json"
    assert raw.data == b"\x00raw" and raw.data_content_type == "application/octet-stream"


@pytest.mark.parametrize(
    ("via", "pubsub", "topic", "code", "words"),
    [
        (DAPR, "pubsub", "orders", grpc.StatusCode.FAILED_PRECONDITION, "no pubsub is configured"),
        (OWN, "kafka", "orders", grpc.StatusCode.INVALID_ARGUMENT, "'kafka' not found"),
        (OWN, "", "orders", grpc.StatusCode.INVALID_ARGUMENT, "pubsub name is empty"),
        (OWN, "pubsub", "", grpc.StatusCode.INVALID_ARGUMENT, "topic is empty"),
    ],
    ids=["no-components", "unknown-pubsub", "empty-pubsub", "empty-topic"],
)
def test_publish_refusals_use_daprs_codes_and_name_the_problem(
    world: World, via: str, pubsub: str, topic: str, code: grpc.StatusCode, words: str
) -> None:
    request = runtime_pb2.PublishEventRequest(pubsub_name=pubsub, topic=topic, data=b"{}")
    with pytest.raises(grpc.RpcError) as raised:
        _raw(world, via, PUBLISH_EVENT, request.SerializeToString())
    err: Any = raised.value
    assert err.code() is code
    assert words in err.details()


# -- GetMetadata -----------------------------------------------------------------------------------


def test_dapr_client_get_metadata_names_the_app_and_its_components(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    with dapr_client(world, monkeypatch, OWN) as client:
        metadata = client.get_metadata()
    assert metadata.application_id == OWN
    (component,) = metadata.registered_components
    assert (component.name, component.type, component.version) == (
        "pubsub",
        "pubsub.in-memory",
        "v1",
    )


def test_get_metadata_lists_subscriptions_and_the_app_connection(world: World) -> None:
    async def fetch() -> bytes:
        async with grpc.aio.insecure_channel(world.targets[OWN]) as channel:
            call = channel.unary_unary(GET_METADATA)
            reply: bytes = await call(b"", metadata=(("dapr-api-token", CLUSTER),), timeout=10)
            return reply

    response = dapr_metadata.GetMetadataResponse.FromString(world.loop.run(fetch()))
    assert response.id == OWN
    assert response.runtime_version == RUNTIME_VERSION
    assert response.runtime_version.startswith("grpc-channel/")
    (subscription,) = response.subscriptions
    assert (subscription.pubsub_name, subscription.topic) == ("pubsub", "orders")
    assert subscription.dead_letter_topic == "orders-dead"
    assert subscription.type == dapr_metadata.PROGRAMMATIC
    rules = [(rule.match, rule.path) for rule in subscription.rules.rules]
    assert ('event.type == "big"', "/orders/big") in rules
    connection = response.app_connection_properties
    assert (connection.port, connection.protocol) == (world.own_app_port, "grpc")
    assert (connection.channel_address, connection.max_concurrency) == ("127.0.0.1", 4)
    dapr_side = dapr_metadata.GetMetadataResponse.FromString(_raw(world, DAPR, GET_METADATA, b""))
    assert dapr_side.id == DAPR and not dapr_side.registered_components
    assert not dapr_side.subscriptions


# -- tokens and unserved methods -------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong", CLUSTER + "x"], ids=["missing", "wrong", "long"])
@pytest.mark.parametrize(
    "method", [INVOKE_SERVICE, PUBLISH_EVENT, GET_METADATA, f"{_DAPR_SERVICE}GetState"]
)
def test_a_missing_or_wrong_token_is_unauthenticated(
    world: World, token: str | None, method: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _raw(world, OWN, method, _invoke_request(OWN, "echo"), token=token)
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


def test_dapr_client_without_the_token_is_unauthenticated(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        dapr_client(world, monkeypatch, OWN, token=None) as client,
        pytest.raises(grpc.RpcError) as raised,
    ):
        client.get_metadata()
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


def test_an_unserved_dapr_method_is_unimplemented_and_never_reaches_the_app(world: World) -> None:
    with pytest.raises(grpc.RpcError) as unary:
        _raw(world, OWN, f"{_DAPR_SERVICE}GetState", b"", metadata=[("dapr-app-id", OWN)])
    err: Any = unary.value
    assert err.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "/dapr.proto.runtime.v1.Dapr/GetState is not served by this sidecar" in err.details()
    # A streaming method of the Dapr API: the same answer, whatever the call's shape.
    with grpc.insecure_channel(world.targets[OWN]) as channel:
        stream = channel.stream_stream(f"{_DAPR_SERVICE}SubscribeTopicEventsAlpha1")(
            iter([b""]), metadata=(("dapr-api-token", CLUSTER),), timeout=10
        )
        with pytest.raises(grpc.RpcError) as streamed:
            next(stream)
    assert streamed.value.code() is grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
    assert "SubscribeTopicEventsAlpha1" in streamed.value.details()  # type: ignore[attr-defined]


# -- max_in_flight and the observer ---------------------------------------------------------------


class _Observed:
    def __init__(self, log: list[Any], method: str, target: str, local: bool) -> None:
        self._log, self._key = log, (method, target, local)

    def forward_metadata(self, pairs: MetadataPairs) -> MetadataPairs:
        return (*pairs, ("x-observed", "yes"))

    def end(self, code: grpc.StatusCode) -> None:
        self._log.append(("end", *self._key, code))


class _Observer:
    """A ProxyObserver that logs begin/end (on the sidecar's loop)."""

    def __init__(self) -> None:
        self.log: list[Any] = []

    def begin(
        self, method: str, target_app: str, local: bool, incoming: MetadataPairs
    ) -> _Observed:
        self.log.append(("begin", method, target_app, local))
        return _Observed(self.log, method, target_app, local)


def test_dapr_api_calls_count_against_max_in_flight_and_reach_the_observer(
    dapr_app: DaprApp,
) -> None:
    observer = _Observer()
    solo = "solo"
    sidecar = Sidecar(
        solo,
        resolver=PeersResolver(environ={}),
        app_address=dapr_app.target,
        app_token=APP_SECRET,
        max_in_flight=1,
        observer=observer,
    )
    sidecar.add_services(DaprApi(solo, call_app=sidecar_call_app(sidecar)).handler())
    dapr_app.reset()
    with loop_thread() as loop:
        port = loop.run(sidecar.start())
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                invoke = channel.unary_unary(INVOKE_SERVICE)
                # The observer's metadata (a tracer's context) reaches the app.
                seen = json.loads(_app_data(invoke(_invoke_request(solo, "metadata"), timeout=10)))
                assert seen["x-observed"] == ["yes"]
                slow = invoke.future(_invoke_request(solo, "sleep", b"5"), timeout=10)
                assert wait_until(lambda: dapr_app.stats()["in_flight"] == 1, timeout=5)
                assert sidecar.in_flight == 1  # the API call, its app call not counted again
                # The one place is taken: API calls and proxied calls alike are refused.
                refused: list[Any] = []
                for method, request, metadata in [
                    (GET_METADATA, b"", ()),
                    (INVOKE_SERVICE, _invoke_request(solo, "echo"), ()),
                    ("/test.Any/Call", b"", (("dapr-app-id", solo),)),
                ]:
                    with pytest.raises(grpc.RpcError) as raised:
                        channel.unary_unary(method)(request, metadata=metadata, timeout=10)
                    refused.append(raised.value)
                assert {err.code() for err in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
                assert all("max_in_flight=1" in err.details() for err in refused)
                slow.cancel()
                assert wait_until(lambda: sidecar.in_flight == 0)
                with pytest.raises(grpc.RpcError) as unknown:
                    invoke(_invoke_request("nobody", "echo"), timeout=10)
                assert unknown.value.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
                publish = runtime_pb2.PublishEventRequest(pubsub_name="p", topic="t")
                with pytest.raises(grpc.RpcError):  # no pubsub here: FAILED_PRECONDITION
                    channel.unary_unary(PUBLISH_EVENT)(publish.SerializeToString(), timeout=10)
                channel.unary_unary(GET_METADATA)(b"", timeout=10)
        finally:
            loop.run(sidecar.stop(None))
    ok, cancelled = grpc.StatusCode.OK, grpc.StatusCode.CANCELLED
    # One begin and one end per API call let in; the refused ones were never let in.
    assert observer.log == [
        ("begin", INVOKE_SERVICE, solo, True),
        ("end", INVOKE_SERVICE, solo, True, ok),
        ("begin", INVOKE_SERVICE, solo, True),
        ("end", INVOKE_SERVICE, solo, True, cancelled),
        ("begin", INVOKE_SERVICE, "nobody", False),
        ("end", INVOKE_SERVICE, "nobody", False, grpc.StatusCode.NOT_FOUND),
        ("begin", PUBLISH_EVENT, solo, True),
        ("end", PUBLISH_EVENT, solo, True, grpc.StatusCode.FAILED_PRECONDITION),
        ("begin", GET_METADATA, solo, True),
        ("end", GET_METADATA, solo, True, ok),
    ]


# -- construction ----------------------------------------------------------------------------------


async def _noop_call_app(*args: Any, **kwargs: Any) -> bytes:
    return b""


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"app_id": " x"}, ValueError, "app_id"),
        ({"call_app": "nope"}, TypeError, "call_app"),
        ({"publisher": object()}, TypeError, "publisher"),
        ({"components": [""]}, TypeError, "components"),
        ({"api_token": ""}, ValueError, "api_token"),
        ({"subscriptions": 3}, TypeError, "subscriptions"),
    ],
)
def test_bad_arguments_are_refused_naming_them(
    kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    arguments: dict[str, Any] = {"app_id": "x", "call_app": _noop_call_app, **kwargs}
    with pytest.raises(error, match=words):
        DaprApi(arguments.pop("app_id"), **arguments)
