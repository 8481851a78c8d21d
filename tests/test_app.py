"""The app-side SDK, ``grpc_channel.app.App``, served on the sync and on the asyncio server.

Every server test runs in both modes (``aio`` parameter) and calls the app with plain grpcio stubs
(``support_app.AppClient``); the last tests call it through the project's own app channel. Handlers
come in both forms (plain and ``async def``) in each mode.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import grpc
import pytest
from google.protobuf import any_pb2, struct_pb2, wrappers_pb2
from support_app import AppClient, serving

from grpc_channel import aio as grpc_aio
from grpc_channel.app import (
    AbortCall,
    App,
    DuplicateRouteError,
    MethodRequest,
    MethodResponse,
    RegistrationError,
    TopicEvent,
    TopicEventStatus,
)
from grpc_channel.appcallback import ON_INVOKE, ON_TOPIC_EVENT
from grpc_channel.channel import Channel
from grpc_channel.dial_options import with_app_token, with_insecure
from grpc_channel.invoke import InvokeMethodRequest
from grpc_channel.v1 import appcallback_pb2, common_pb2

TOKEN = "s3cret-app-token"
Status = appcallback_pb2.TopicEventResponse


@pytest.fixture(params=[False, True], ids=["sync", "aio"])
def aio(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    # Both the App and the project's channel read APP_API_TOKEN; tests choose it themselves.
    monkeypatch.delenv("APP_API_TOKEN", raising=False)


@pytest.fixture
def client_for(aio: bool) -> Iterator[Any]:
    """``client_for(app)`` serves ``app`` in this test's mode and returns a client to it."""
    with contextlib.ExitStack() as stack:

        def start(app: App) -> AppClient:
            port = stack.enter_context(serving(app, aio))
            return stack.enter_context(AppClient(port))

        yield start


def _code(err: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return cast(grpc.Call, err.value).code()


def _details(err: pytest.ExceptionInfo[grpc.RpcError]) -> str:
    return cast(grpc.Call, err.value).details() or ""


def _as(is_async: bool, body: Callable[..., Any]) -> Callable[..., Any]:
    """``body`` itself, or an ``async def`` handler that awaits once and then runs it."""
    if not is_async:
        return body

    async def handler(*args: Any) -> Any:
        await asyncio.sleep(0)
        return body(*args)

    return handler


# -- ListTopicSubscriptions ------------------------------------------------------------------------


def _orders_app(seen: list[tuple[str, TopicEvent]]) -> App:
    app = App()

    @app.subscribe("pubsub", "orders", metadata={"rawPayload": "true"}, dead_letter_topic="dead")
    def default(event: TopicEvent) -> None:
        seen.append(("default", event))

    @app.subscribe("pubsub", "orders", match='event.type == "big"', route="/orders/big")
    async def big(event: TopicEvent) -> TopicEventStatus:
        seen.append(("big", event))
        return TopicEventStatus.SUCCESS

    @app.subscribe(
        "pubsub", "orders", match='event.type == "vip"', route="/orders/vip", priority=-1
    )
    def vip(event: TopicEvent) -> TopicEventStatus:
        seen.append(("vip", event))
        return TopicEventStatus.DROP

    @app.subscribe("pubsub", "orders", match='event.type == "small"', route="/orders/small")
    def small(event: TopicEvent) -> None:
        seen.append(("small", event))

    @app.subscribe("other", "audit", route="/audit")
    async def audit(event: TopicEvent) -> None:
        seen.append(("audit", event))

    return app


def test_list_topic_subscriptions_reports_rules_default_dead_letter_and_metadata(
    client_for: Any,
) -> None:
    client = client_for(_orders_app([]))
    subs = list(client.subscriptions().subscriptions)
    assert [(s.pubsub_name, s.topic) for s in subs] == [("pubsub", "orders"), ("other", "audit")]
    orders, audit = subs
    assert dict(orders.metadata) == {"rawPayload": "true"}
    assert orders.dead_letter_topic == "dead"
    assert orders.routes.default == ""
    # priority -1 first, then declaration order among equal priorities.
    assert [(r.match, r.path) for r in orders.routes.rules] == [
        ('event.type == "vip"', "/orders/vip"),
        ('event.type == "big"', "/orders/big"),
        ('event.type == "small"', "/orders/small"),
    ]
    assert audit.routes.default == "/audit"
    assert list(audit.routes.rules) == []
    assert dict(audit.metadata) == {}
    assert audit.dead_letter_topic == ""


def test_an_app_without_subscriptions_lists_none(client_for: Any) -> None:
    assert list(client_for(App()).subscriptions().subscriptions) == []


# -- OnTopicEvent ----------------------------------------------------------------------------------


def test_topic_events_are_routed_by_path_and_default(client_for: Any) -> None:
    seen: list[tuple[str, TopicEvent]] = []
    client = client_for(_orders_app(seen))
    assert client.event("pubsub", "orders", "").status == Status.SUCCESS
    assert client.event("pubsub", "orders", "/orders/big").status == Status.SUCCESS
    assert client.event("pubsub", "orders", "/orders/vip").status == Status.DROP
    assert client.event("pubsub", "orders", "/orders/small").status == Status.SUCCESS
    assert client.event("other", "audit", "/audit").status == Status.SUCCESS
    assert client.event("other", "audit", "").status == Status.SUCCESS
    assert [name for name, _ in seen] == ["default", "big", "vip", "small", "audit", "audit"]
    paths = [e.path for _, e in seen]
    assert paths == ["", "/orders/big", "/orders/vip", "/orders/small", "/audit", ""]


def test_topic_event_carries_the_cloudevent_fields_and_metadata(client_for: Any) -> None:
    seen: list[TopicEvent] = []
    app = App()

    @app.subscribe("pubsub", "orders")
    def handler(event: TopicEvent) -> None:
        seen.append(event)

    client = client_for(app)
    request = appcallback_pb2.TopicEventRequest(
        id="id-7",
        source="checkout",
        type="com.example.order",
        spec_version="1.0",
        data_content_type="application/json",
        topic="orders",
        data=b'{"n": 1}',
        pubsub_name="pubsub",
    )
    request.extensions.update({"traceid": "abc", "count": 2})
    metadata = (("x-user", "ann"), ("x-user", "bob"), ("trace-bin", b"\x00\x01"))
    client.call(ON_TOPIC_EVENT, request, metadata=metadata)
    (event,) = seen
    assert (event.id, event.source, event.type, event.spec_version) == (
        "id-7",
        "checkout",
        "com.example.order",
        "1.0",
    )
    assert (event.topic, event.pubsub_name, event.path) == ("orders", "pubsub", "")
    assert event.data_content_type == "application/json"
    assert event.data == b'{"n": 1}'
    assert event.json() == {"n": 1}
    assert event.text() == '{"n": 1}'
    assert event.extensions == {"traceid": "abc", "count": 2.0}
    assert event.metadata["x-user"] == "ann, bob"
    assert event.metadata["trace-bin"] == base64.b64encode(b"\x00\x01").decode()
    # The repr names the metadata keys, never a value.
    assert "x-user" in repr(event)
    assert "ann" not in repr(event)


@pytest.mark.parametrize("is_async", [False, True], ids=["def", "async-def"])
@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (TopicEventStatus.SUCCESS, Status.SUCCESS),
        (TopicEventStatus.RETRY, Status.RETRY),
        (TopicEventStatus.DROP, Status.DROP),
        (None, Status.SUCCESS),
        (ValueError("boom"), Status.RETRY),
        ("not a status", Status.RETRY),
    ],
    ids=["success", "retry", "drop", "none", "raise", "wrong-type"],
)
def test_topic_handler_results_become_statuses(
    client_for: Any, is_async: bool, outcome: Any, expected: int
) -> None:
    app = App()

    def answer() -> Any:
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def handler(event: TopicEvent) -> Any:
        return answer()

    app.subscribe("pubsub", "orders")(_as(is_async, handler))
    assert client_for(app).event("pubsub", "orders").status == expected


def test_a_raising_topic_handler_is_logged_without_metadata_values(
    client_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(app_token=TOKEN)

    @app.subscribe("pubsub", "orders")
    def handler(event: TopicEvent) -> None:
        raise RuntimeError("cannot store order")

    client = client_for(app)
    with caplog.at_level(logging.ERROR, logger="grpc_channel.app"):
        reply = client.event(
            "pubsub", "orders", metadata=(("dapr-api-token", TOKEN), ("x-user", "ann-secret"))
        )
    assert reply.status == Status.RETRY
    (record,) = [r for r in caplog.records if r.name == "grpc_channel.app"]
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert "'orders'" in record.getMessage()
    assert TOKEN not in caplog.text
    assert "ann-secret" not in caplog.text


@pytest.mark.parametrize(
    ("pubsub", "topic", "path"),
    [("pubsub", "orders", "/nowhere"), ("pubsub", "nothing", ""), ("nope", "orders", "")],
)
def test_an_unknown_route_is_unimplemented_naming_it(
    client_for: Any, pubsub: str, topic: str, path: str
) -> None:
    client = client_for(_orders_app([]))
    with pytest.raises(grpc.RpcError) as err:
        client.event(pubsub, topic, path)
    # UNIMPLEMENTED, as the dapr SDK answers: Dapr drops the event rather than retrying it.
    assert _code(err) == grpc.StatusCode.UNIMPLEMENTED
    assert f"pubsub {pubsub!r} topic {topic!r} path {path!r}" in _details(err)


def test_a_rule_only_topic_has_no_default_handler(client_for: Any) -> None:
    app = App()

    @app.subscribe("pubsub", "orders", match="true", route="/all")
    def handler(event: TopicEvent) -> None:
        return None

    client = client_for(app)
    assert client.event("pubsub", "orders", "/all").status == Status.SUCCESS
    with pytest.raises(grpc.RpcError) as err:
        client.event("pubsub", "orders", "")
    assert _code(err) == grpc.StatusCode.UNIMPLEMENTED


def test_abort_from_a_topic_handler_sets_the_status(client_for: Any) -> None:
    app = App()

    @app.subscribe("pubsub", "orders")
    async def handler(event: TopicEvent) -> None:
        raise AbortCall(grpc.StatusCode.UNIMPLEMENTED, "not for us")

    with pytest.raises(grpc.RpcError) as err:
        client_for(app).event("pubsub", "orders")
    assert (_code(err), _details(err)) == (grpc.StatusCode.UNIMPLEMENTED, "not for us")


# -- OnInvoke --------------------------------------------------------------------------------------


def _invoke_app() -> App:
    app = App()

    @app.method("bytes")
    def as_bytes(request: MethodRequest) -> bytes:
        return b"\x00raw:" + request.data

    @app.method("text")
    async def as_text(request: MethodRequest) -> str:
        await asyncio.sleep(0)
        return f"hello {request.text()} ✓"

    @app.method("json")
    def as_json(request: MethodRequest) -> dict[str, Any]:
        return {"got": request.json(), "ct": request.content_type}

    @app.method("list")
    async def as_list(request: MethodRequest) -> list[int]:
        return [1, 2, 3]

    @app.method("proto")
    def as_proto(request: MethodRequest) -> wrappers_pb2.StringValue:
        return wrappers_pb2.StringValue(value="packed")

    @app.method("none")
    def as_none(request: MethodRequest) -> None:
        return None

    @app.method("full")
    async def full(request: MethodRequest) -> MethodResponse:
        return MethodResponse(
            data="<b>hi</b>",
            content_type="text/html",
            headers={"x-app-header": "one", "x-multi": ["a", "b"]},
            trailers={"x-app-trailer": "done"},
        )

    @app.method("describe")
    def describe(request: MethodRequest) -> dict[str, Any]:
        return {
            "method": request.method,
            "verb": request.http_verb,
            "query": request.querystring,
            "user": request.metadata.get("x-user"),
            "type_url": request.data_type_url,
        }

    return app


def test_invoke_return_values_become_responses(client_for: Any) -> None:
    client = client_for(_invoke_app())

    reply, _ = client.invoke("bytes", b"abc")
    assert (reply.data.value, reply.content_type) == (b"\x00raw:abc", "application/octet-stream")
    assert reply.data.type_url == ""

    reply, _ = client.invoke("text", b"ann")
    assert reply.data.value == "hello ann ✓".encode()
    assert reply.content_type == "text/plain; charset=UTF-8"

    reply, _ = client.invoke("json", b'{"a": 1}', "application/json")
    assert json.loads(reply.data.value) == {"got": {"a": 1}, "ct": "application/json"}
    assert reply.content_type == "application/json"

    reply, _ = client.invoke("list")
    assert (json.loads(reply.data.value), reply.content_type) == ([1, 2, 3], "application/json")

    reply, _ = client.invoke("proto")
    unpacked = wrappers_pb2.StringValue()
    assert reply.data.Unpack(unpacked) and unpacked.value == "packed"
    assert reply.content_type == "application/x-protobuf"

    reply, _ = client.invoke("none")
    assert reply == common_pb2.InvokeResponse()


def test_invoke_response_headers_and_trailers_are_sent(client_for: Any) -> None:
    reply, call = client_for(_invoke_app()).invoke("full")
    assert (reply.data.value, reply.content_type) == (b"<b>hi</b>", "text/html")
    headers = list(call.initial_metadata())
    assert ("x-app-header", "one") in headers
    assert [v for k, v in headers if k == "x-multi"] == ["a", "b"]
    assert ("x-app-trailer", "done") in list(call.trailing_metadata())


def test_invoke_request_fields(client_for: Any) -> None:
    client = client_for(_invoke_app())
    request = common_pb2.InvokeRequest(method="describe", content_type="text/plain")
    request.http_extension.verb = common_pb2.HTTPExtension.Verb.PATCH
    request.http_extension.querystring = "a=1&b=2"
    request.data.Pack(struct_pb2.Value(string_value="x"))
    reply, _ = client.call(ON_INVOKE, request, metadata=(("x-user", "ann"),))
    assert json.loads(reply.data.value) == {
        "method": "describe",
        "verb": "PATCH",
        "query": "a=1&b=2",
        "user": "ann",
        "type_url": "type.googleapis.com/google.protobuf.Value",
    }
    # Without an HTTP extension there is no verb.
    reply, _ = client.invoke("describe")
    assert json.loads(reply.data.value)["verb"] is None


@pytest.mark.parametrize("is_async", [False, True], ids=["def", "async-def"])
def test_a_raising_method_is_internal_with_the_type_only(
    client_for: Any, is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()

    def fail() -> bytes:
        raise KeyError("secret detail")

    def handler(request: MethodRequest) -> bytes:
        return fail()

    app.method("boom")(_as(is_async, handler))
    with (
        caplog.at_level(logging.ERROR, logger="grpc_channel.app"),
        pytest.raises(grpc.RpcError) as err,
    ):
        client_for(app).invoke("boom")
    assert _code(err) == grpc.StatusCode.INTERNAL
    assert "KeyError" in _details(err) and "'boom'" in _details(err)
    assert "secret detail" not in _details(err) and "Traceback" not in _details(err)
    assert any(r.exc_info and isinstance(r.exc_info[1], KeyError) for r in caplog.records)


def test_an_unsendable_return_value_is_internal(client_for: Any) -> None:
    app = App()

    @app.method("odd")
    def odd(request: MethodRequest) -> Any:
        return 42

    @app.method("bad-header")
    def bad_header(request: MethodRequest) -> MethodResponse:
        return MethodResponse(b"", headers={"bad key!": "x"})

    client = client_for(app)
    for method, error in (("odd", "TypeError"), ("bad-header", "MetadataError")):
        with pytest.raises(grpc.RpcError) as err:
            client.invoke(method)
        assert _code(err) == grpc.StatusCode.INTERNAL
        assert error in _details(err)


def test_an_unknown_method_is_unimplemented_naming_it(client_for: Any) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client_for(_invoke_app()).invoke("missing")
    assert _code(err) == grpc.StatusCode.UNIMPLEMENTED
    assert "'missing'" in _details(err)


@pytest.mark.parametrize("is_async", [False, True], ids=["def", "async-def"])
def test_abort_passes_through_with_code_details_and_trailers(
    client_for: Any, is_async: bool
) -> None:
    app = App()
    abort = AbortCall(grpc.StatusCode.INVALID_ARGUMENT, "name is required", {"x-why": "name"})

    def handler(request: MethodRequest) -> bytes:
        raise abort

    app.method("check")(_as(is_async, handler))
    with pytest.raises(grpc.RpcError) as err:
        client_for(app).invoke("check")
    assert (_code(err), _details(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "name is required")
    trailers = cast(grpc.Call, err.value).trailing_metadata() or ()
    assert ("x-why", "name") in [tuple(pair) for pair in trailers]


def test_abort_call_refuses_ok_and_non_codes() -> None:
    with pytest.raises(ValueError, match="OK"):
        AbortCall(grpc.StatusCode.OK)
    with pytest.raises(TypeError, match=r"grpc\.StatusCode"):
        AbortCall(3)  # type: ignore[arg-type]


# -- where handlers run ----------------------------------------------------------------------------


def test_sync_handlers_never_run_on_the_event_loop_and_async_ones_do(
    client_for: Any, aio: bool
) -> None:
    app = App()
    seen: dict[str, Any] = {}

    @app.method("plain")
    def plain(request: MethodRequest) -> bytes:
        try:
            asyncio.get_running_loop()
            seen["plain_on_loop"] = True
        except RuntimeError:
            seen["plain_on_loop"] = False
        seen["plain_thread"] = threading.current_thread().name
        return b"ok"

    @app.method("coro")
    async def coro(request: MethodRequest) -> bytes:
        seen["coro_thread"] = threading.current_thread().name
        seen["coro_loop"] = id(asyncio.get_running_loop())
        return b"ok"

    client = client_for(app)
    client.invoke("plain")
    client.invoke("coro")
    first_loop = seen["coro_loop"]
    client.invoke("coro")
    assert seen["plain_on_loop"] is False
    assert seen["coro_loop"] == first_loop  # one loop serves every coroutine
    if aio:
        assert seen["coro_thread"] == "test-aio-app"
        assert seen["plain_thread"] != "test-aio-app"
    else:
        assert seen["coro_thread"] == "grpc_channel.app-loop"
        assert seen["plain_thread"].startswith("grpc-app")


def _concurrently(client: AppClient, method: str, count: int = 2) -> list[bytes]:
    """Invoke ``method`` ``count`` times at once from separate threads; the replies' data."""
    replies: list[bytes] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            replies.append(client.invoke(method)[0].data.value)
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    return replies


def test_plain_handlers_run_side_by_side(client_for: Any) -> None:
    # Under aio a plain handler that ran on the loop would block it, and the second call could
    # never reach the barrier.
    app = App()
    barrier = threading.Barrier(2, timeout=10)

    @app.method("meet")
    def meet(request: MethodRequest) -> bytes:
        barrier.wait()
        return b"met"

    assert _concurrently(client_for(app), "meet") == [b"met", b"met"]


def test_async_handlers_share_one_loop_concurrently(client_for: Any) -> None:
    app = App()
    arrived: list[int] = []

    @app.method("meet")
    async def meet(request: MethodRequest) -> bytes:
        arrived.append(id(asyncio.get_running_loop()))
        for _ in range(1000):  # up to 10 s for the other call to arrive
            if len(arrived) == 2:
                return b"met"
            await asyncio.sleep(0.01)
        return b"alone"

    assert _concurrently(client_for(app), "meet") == [b"met", b"met"]
    assert arrived[0] == arrived[1]


# -- HealthCheck -----------------------------------------------------------------------------------


def test_health_is_ok_by_default(client_for: Any) -> None:
    assert client_for(App()).health() == appcallback_pb2.HealthCheckResponse()


@pytest.mark.parametrize("is_async", [False, True], ids=["def", "async-def"])
def test_a_health_handler_decides(client_for: Any, is_async: bool) -> None:
    app = App()
    state = {"healthy": True}

    def health() -> bool:
        return state["healthy"]

    app.health_check(_as(is_async, health))
    client = client_for(app)
    assert client.health() == appcallback_pb2.HealthCheckResponse()
    state["healthy"] = False
    with pytest.raises(grpc.RpcError) as err:
        client.health()
    assert _code(err) == grpc.StatusCode.UNAVAILABLE


def test_a_raising_health_handler_is_unavailable(client_for: Any) -> None:
    app = App()

    @app.health_check
    def health() -> None:
        raise OSError("disk gone")

    with pytest.raises(grpc.RpcError) as err:
        client_for(app).health()
    assert _code(err) == grpc.StatusCode.UNAVAILABLE
    assert "OSError" in _details(err)


# -- the app token ---------------------------------------------------------------------------------


def _token_app(**kwargs: Any) -> App:
    app = App(**kwargs)

    @app.method("echo")
    def echo(request: MethodRequest) -> bytes:
        return request.data

    @app.subscribe("pubsub", "orders")
    def on_order(event: TopicEvent) -> None:
        return None

    return app


def _every_call(client: AppClient, metadata: tuple[tuple[str, str], ...]) -> None:
    client.invoke("echo", b"x", metadata=metadata)
    client.event("pubsub", "orders", metadata=metadata)
    client.subscriptions(metadata=metadata)
    client.health(metadata=metadata)


@pytest.mark.parametrize("source", ["argument", "environment"])
def test_the_token_is_required_on_every_call(
    client_for: Any, source: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if source == "environment":
        monkeypatch.setenv("APP_API_TOKEN", TOKEN)
        app = _token_app()
    else:
        app = _token_app(app_token=TOKEN)
    assert app.token_required and TOKEN not in repr(app)
    client = client_for(app)
    _every_call(client, (("dapr-api-token", TOKEN),))
    for metadata, why in (
        ((), "missing"),
        ((("dapr-api-token", "wrong"),), "invalid"),
        ((("dapr-api-token", TOKEN + "x"),), "invalid"),
        ((("dapr-api-token", TOKEN), ("dapr-api-token", TOKEN)), "invalid"),
    ):
        calls: list[Callable[[Any], object]] = [
            lambda md: client.invoke("echo", metadata=md),
            lambda md: client.event("pubsub", "orders", metadata=md),
            lambda md: client.subscriptions(metadata=md),
            lambda md: client.health(metadata=md),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as err:
                call(metadata)
            assert _code(err) == grpc.StatusCode.UNAUTHENTICATED
            assert why in _details(err) and TOKEN not in _details(err)
    assert TOKEN not in caplog.text


def test_handlers_never_see_the_token(client_for: Any) -> None:
    app = App(app_token=TOKEN)
    seen: list[dict[str, str]] = []

    @app.method("m")
    def method(request: MethodRequest) -> None:
        seen.append(request.metadata)

    @app.subscribe("pubsub", "orders")
    async def on_order(event: TopicEvent) -> None:
        seen.append(event.metadata)

    client = client_for(app)
    metadata = (("dapr-api-token", TOKEN), ("x-user", "ann"))
    client.invoke("m", metadata=metadata)
    client.event("pubsub", "orders", metadata=metadata)
    assert len(seen) == 2
    for md in seen:
        assert md["x-user"] == "ann"
        assert "dapr-api-token" not in md


def test_an_empty_token_argument_overrides_the_environment(
    client_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_API_TOKEN", TOKEN)
    app = _token_app(app_token="")
    assert not app.token_required
    _every_call(client_for(app), ())


# -- registration ----------------------------------------------------------------------------------


def test_registration_errors_name_what_was_wrong() -> None:
    app = _orders_app([])

    def handler(event: TopicEvent) -> None:
        return None

    with pytest.raises(DuplicateRouteError) as dup:
        app.subscribe("pubsub", "orders", match="true", route="/orders/big")(handler)
    assert (dup.value.pubsub, dup.value.topic, dup.value.route) == (
        "pubsub",
        "orders",
        "/orders/big",
    )
    assert "'pubsub'" in str(dup.value) and "'/orders/big'" in str(dup.value)
    with pytest.raises(DuplicateRouteError, match="default route"):
        app.subscribe("pubsub", "orders")(handler)
    with pytest.raises(DuplicateRouteError, match="'/audit'"):
        app.subscribe("other", "audit", match="true", route="/audit")(handler)
    with pytest.raises(RegistrationError, match="needs a route"):
        app.subscribe("pubsub", "x", match="true")(handler)
    with pytest.raises(RegistrationError, match="priority"):
        app.subscribe("pubsub", "x", priority=1)(handler)
    with pytest.raises(RegistrationError, match="dead_letter_topic"):
        app.subscribe("pubsub", "orders", match="1 == 1", route="/z", dead_letter_topic="other")(
            handler
        )
    with pytest.raises(RegistrationError, match="metadata"):
        app.subscribe("pubsub", "orders", match="1 == 1", route="/z", metadata={"a": "b"})(handler)
    with pytest.raises(RegistrationError, match="topic must be a non-empty str"):
        app.subscribe("pubsub", "")(handler)
    with pytest.raises(RegistrationError, match="mapping of str to str"):
        app.subscribe("pubsub", "y", metadata={"a": 1})(handler)  # type: ignore[dict-item]
    # A refused registration left nothing behind: /z is still free.
    app.subscribe("pubsub", "orders", match="1 == 1", route="/z")(handler)

    @app.method("m")
    def method(request: MethodRequest) -> None:
        return None

    with pytest.raises(RegistrationError, match="'m' already"):
        app.method("m")(method)
    with pytest.raises(RegistrationError, match=r"@app.method\('name'\)"):
        app.method(method)  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match="already has a health handler"):
        app.health_check(app.health_check(lambda: True))
    with pytest.raises(TypeError, match="app_token"):
        App(app_token=123)  # type: ignore[arg-type]


def test_no_registration_or_second_start_while_serving(aio: bool) -> None:
    app = App()
    with serving(app, aio) as port:
        assert app.port == port
        with pytest.raises(RegistrationError, match=f"serving on port {port}"):
            app.method("late")(lambda request: b"")
        with pytest.raises(RuntimeError, match="already serving"):
            app.start(0)
    assert app.port is None


def test_a_taken_port_fails_to_start(aio: bool) -> None:
    first, second = App(), App()
    with serving(first, aio) as port:
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            second.start(port)
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            asyncio.run(second.start_async(port))
        assert second.port is None
        with AppClient(port) as client:  # the first app still serves
            assert client.health() == appcallback_pb2.HealthCheckResponse()


def test_bad_serving_arguments() -> None:
    app = App()
    with pytest.raises(ValueError, match="port"):
        app.start(70000)
    with pytest.raises(ValueError, match="max_workers"):
        app.start(0, max_workers=0)
    with pytest.raises(ValueError, match="host"):
        app.start(0, host="")
    assert app.port is None


# -- blocking and task forms -----------------------------------------------------------------------


def test_run_blocks_until_stopped() -> None:
    app = _invoke_app()
    ready = threading.Event()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            app.run(0)
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        for _ in range(1000):
            if app.port is not None or ready.is_set():
                break
            threading.Event().wait(0.01)
        port = app.port
        assert port is not None, errors
        with AppClient(port) as client:
            assert client.invoke("bytes", b"a")[0].data.value == b"\x00raw:a"
    finally:
        app.stop()
        thread.join(10)
    assert not thread.is_alive() and not errors


def test_serve_async_runs_until_cancelled() -> None:
    async def main() -> None:
        app = _invoke_app()
        task = asyncio.create_task(app.serve_async(0))
        while app.port is None:
            await asyncio.sleep(0.01)
        port = app.port
        reply = await asyncio.to_thread(lambda: AppClient(port).invoke("text", b"ann")[0])
        assert reply.data.value == "hello ann ✓".encode()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert app.port is None

    asyncio.run(main())


# -- with the project's own app channel ------------------------------------------------------------


def test_the_project_channel_invokes_the_app(aio: bool) -> None:
    app = _token_app(app_token=TOKEN)

    @app.method("m")
    def m(request: MethodRequest) -> MethodResponse:
        return MethodResponse(request.text().upper(), headers={"x-app-header": "ours"})

    with serving(app, aio) as port:
        with Channel.local(port, with_app_token(TOKEN)) as channel:
            channel.wait_until_ready(10)
            rsp = channel.invoke_method(InvokeMethodRequest("m").with_data(b"x", "text/plain"))
            assert rsp.status.ok, rsp.status.message
            assert (rsp.data, rsp.content_type) == (b"X", "text/plain; charset=UTF-8")
            assert rsp.headers.get("x-app-header") == ["ours"]
            missing = channel.invoke_method(InvokeMethodRequest("missing"))
            assert missing.status.grpc_code == grpc.StatusCode.UNIMPLEMENTED

        async def through_aio() -> None:
            async with grpc_aio.dial(
                f"127.0.0.1:{port}", with_insecure(), with_app_token(TOKEN)
            ) as channel:
                await channel.wait_until_ready(10)
                rsp = await channel.invoke_method(
                    InvokeMethodRequest("m").with_data(b"y", "text/plain")
                )
                assert rsp.status.ok, rsp.status.message
                assert rsp.data == b"Y"

        asyncio.run(through_aio())

        # Without the token the app refuses the channel's calls.
        with Channel.local(port) as channel:
            rsp = channel.invoke_method(InvokeMethodRequest("m").with_data(b"x", "text/plain"))
            assert rsp.status.grpc_code == grpc.StatusCode.UNAUTHENTICATED


def test_any_response_data_is_sent_as_is(client_for: Any) -> None:
    app = App()

    @app.method("any")
    def packed(request: MethodRequest) -> any_pb2.Any:
        data = any_pb2.Any()
        data.Pack(wrappers_pb2.Int32Value(value=7))
        return data

    reply, _ = client_for(app).invoke("any")
    value = wrappers_pb2.Int32Value()
    assert reply.data.Unpack(value) and value.value == 7


def test_a_match_that_is_not_cel_is_refused_at_registration() -> None:
    app = App(app_token="")
    with pytest.raises(RegistrationError, match=r"pubsub/orders.*does not compile"):

        @app.subscribe("pubsub", "orders", match="event.type ==", route="/broken")
        def broken(event: Any) -> None:
            return None

    with pytest.raises(RegistrationError, match="undeclared reference to order"):

        @app.subscribe("pubsub", "orders", match="order.total > 1", route="/other")
        def other(event: Any) -> None:
            return None
