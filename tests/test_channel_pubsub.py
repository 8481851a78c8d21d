"""The app channel's pub/sub calls: ``list_topic_subscriptions`` and ``on_topic_event``.

Against apps we did not write (the dapr SDK's ``App``) and our own ``grpc_channel.app.App`` on
the sync and the asyncio server; through the sync ``Channel`` and the ``AsyncChannel``. Same rules
as ``invoke_method``: the app token travels, the deadline travels, failures are ``grpc.RpcError``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from support_app import serving
from support_dapr_app import PUBSUB, DaprApp

from grpc_channel import aio
from grpc_channel.app import App, TopicEvent, TopicEventStatus
from grpc_channel.call_options import call_metadata, force_codec, on_finish, timeout
from grpc_channel.channel import Channel
from grpc_channel.defaults import OptionError
from grpc_channel.dial_options import with_app_token, with_max_concurrency
from grpc_channel.encoding import get_codec
from grpc_channel.v1 import appcallback_pb2

SUCCESS = appcallback_pb2.TopicEventResponse.SUCCESS
RETRY = appcallback_pb2.TopicEventResponse.RETRY
DROP = appcallback_pb2.TopicEventResponse.DROP


def _event(topic: str, event_type: str = "com.dapr.event.sent", path: str = "") -> Any:
    return appcallback_pb2.TopicEventRequest(
        id="e1",
        source="caller",
        type=event_type,
        spec_version="1.0",
        data_content_type="application/json",
        topic=topic,
        data=b'{"n": 1}',
        pubsub_name=PUBSUB,
        path=path,
    )


def _by_topic(subs: list[Any]) -> dict[str, Any]:
    return {s.topic: s for s in subs}


# --- the dapr SDK's App --------------------------------------------------------------------------


def test_dapr_app_subscriptions_are_listed(dapr_app: DaprApp) -> None:
    with Channel.local(dapr_app.port) as channel:
        channel.wait_until_ready(10)
        subs = _by_topic(channel.list_topic_subscriptions(timeout(5)))
    assert set(subs) == {"orders", "drops", "boom"}
    orders = subs["orders"]
    assert orders.pubsub_name == PUBSUB
    assert orders.dead_letter_topic == "orders-dead"
    assert dict(orders.metadata) == {"team": "billing"}
    assert [r.match for r in orders.routes.rules] == ['event.type == "big"']
    assert orders.routes.rules[0].path


def test_dapr_app_statuses_through_sync_and_aio(dapr_app: DaprApp) -> None:
    with Channel.local(dapr_app.port) as channel:
        rules = _by_topic(channel.list_topic_subscriptions())["orders"].routes
        big_path = rules.rules[0].path
        assert channel.on_topic_event(_event("orders", path=rules.default)).status == SUCCESS
        big = _event("orders", event_type="big", path=big_path)
        assert channel.on_topic_event(big).status == RETRY
        assert channel.on_topic_event(_event("drops")).status == DROP
        boom = _failure_or_status(lambda: channel.on_topic_event(_event("boom")))

    async def main() -> tuple[int, Any]:
        async with aio.AsyncChannel.local(dapr_app.port) as channel:
            dropped = (await channel.on_topic_event(_event("drops"))).status
            try:
                answer: Any = (await channel.on_topic_event(_event("boom"))).status
            except grpc.RpcError as exc:
                answer = exc.code()
            return dropped, answer

    dropped, aio_boom = asyncio.run(main())
    assert dropped == DROP
    # A raising handler is never SUCCESS: the SDK answers with an error status (or RETRY).
    assert boom not in (SUCCESS, DROP)
    assert aio_boom == boom


def _failure_or_status(call: Any) -> Any:
    try:
        return call().status
    except grpc.RpcError as exc:
        return exc.code()


# --- our App, on both servers ------------------------------------------------------------------


def _own_app(token: str = "") -> tuple[App, list[TopicEvent]]:
    app = App(app_token=token)
    seen: list[TopicEvent] = []

    @app.subscribe(PUBSUB, "orders", dead_letter_topic="orders-dead")
    def orders(event: TopicEvent) -> TopicEventStatus:
        seen.append(event)
        return TopicEventStatus.SUCCESS

    @app.subscribe(PUBSUB, "orders", match='event.type == "big"', route="/big")
    async def big(event: TopicEvent) -> TopicEventStatus:
        seen.append(event)
        return TopicEventStatus.DROP

    return app, seen


@pytest.fixture(params=[False, True], ids=["sync-server", "aio-server"])
def own(request: pytest.FixtureRequest) -> Iterator[tuple[int, list[TopicEvent]]]:
    app, seen = _own_app(token="s3cret")
    with serving(app, request.param) as port:
        yield port, seen


def test_own_app_through_the_sync_channel(own: tuple[int, list[TopicEvent]]) -> None:
    port, seen = own
    finished: list[Any] = []
    with Channel.local(port, with_app_token("s3cret"), with_max_concurrency(2)) as channel:
        subs = channel.list_topic_subscriptions()
        assert [(s.topic, s.routes.rules[0].path) for s in subs] == [("orders", "/big")]
        response = channel.on_topic_event(
            _event("orders"), call_metadata("x-trace-me", "1"), on_finish(finished.append)
        )
        assert response.status == SUCCESS
        assert channel.on_topic_event(_event("orders", "big", "/big")).status == DROP
        assert channel.concurrency_limit is not None
        assert channel.concurrency_limit.in_flight == 0
    assert finished == [None]
    assert [e.path for e in seen] == ["", "/big"]
    assert seen[0].metadata.get("x-trace-me") == "1"
    assert "dapr-api-token" not in seen[0].metadata  # the App checks it and keeps it from handlers


def test_own_app_through_the_aio_channel(own: tuple[int, list[TopicEvent]]) -> None:
    port, seen = own

    async def main() -> None:
        async with aio.AsyncChannel.local(port, with_app_token("s3cret")) as channel:
            subs = await channel.list_topic_subscriptions()
            assert [s.dead_letter_topic for s in subs] == ["orders-dead"]
            event = _event("orders", "big", "/big")
            assert (await channel.on_topic_event(event)).status == DROP

    asyncio.run(main())
    assert [e.type for e in seen] == ["big"]


def test_a_missing_token_is_unauthenticated(own: tuple[int, list[TopicEvent]]) -> None:
    port, seen = own
    with Channel.local(port) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            channel.on_topic_event(_event("orders"))
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as listed:
            channel.list_topic_subscriptions()
        assert listed.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert seen == []


def test_an_app_without_pubsub_has_no_subscriptions(own_app: Any) -> None:
    # The project's plain OnInvoke test app serves no ListTopicSubscriptions: UNIMPLEMENTED.
    with Channel.local(own_app.port) as channel:
        assert channel.list_topic_subscriptions() == []
        with pytest.raises(grpc.RpcError) as caught:
            channel.on_topic_event(_event("orders"))
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_bad_arguments_are_refused(own_app: Any) -> None:
    with Channel.local(own_app.port) as channel:
        with pytest.raises(TypeError, match="TopicEventRequest"):
            channel.on_topic_event(b"not an event")  # type: ignore[arg-type]
        with pytest.raises(OptionError, match="always speak protobuf"):
            channel.on_topic_event(_event("orders"), force_codec(get_codec("json")))


def test_closed_channel_is_cancelled(own_app: Any) -> None:
    channel = Channel.local(own_app.port)
    channel.close()
    with pytest.raises(grpc.RpcError) as caught:
        channel.on_topic_event(_event("orders"))
    assert caught.value.code() is grpc.StatusCode.CANCELLED
    with pytest.raises(grpc.RpcError) as listed:
        channel.list_topic_subscriptions()
    assert listed.value.code() is grpc.StatusCode.CANCELLED


def _slow_app() -> tuple[App, list[TopicEvent]]:
    app = App(app_token="s3cret")
    seen: list[TopicEvent] = []

    @app.subscribe(PUBSUB, "orders")
    def orders(event: TopicEvent) -> TopicEventStatus:
        seen.append(event)
        if event.type == "slow":
            time.sleep(1.0)
        return TopicEventStatus.SUCCESS

    return app, seen


@pytest.mark.parametrize("client_aio", [False, True], ids=["sync-channel", "aio-channel"])
def test_timeout_and_metadata_keywords(client_aio: bool) -> None:
    """grpcio's keywords, as on ``invoke``: the timeout is the call's deadline, the metadata
    arrives, and a ``dapr-api-token`` among it is dropped (only the channel's own is sent)."""
    app, seen = _slow_app()
    pairs = (("x-kw", "1"), ("dapr-api-token", "not-the-apps"))
    with serving(app, False) as port:
        if client_aio:

            async def main() -> grpc.StatusCode:
                async with aio.AsyncChannel.local(port, with_app_token("s3cret")) as channel:
                    ok = await channel.on_topic_event(_event("orders"), timeout=5, metadata=pairs)
                    assert ok.status == SUCCESS
                    try:
                        await channel.on_topic_event(_event("orders", "slow"), timeout=0.2)
                    except grpc.RpcError as exc:
                        return exc.code()
                    return grpc.StatusCode.OK

            code = asyncio.run(main())
        else:
            with Channel.local(port, with_app_token("s3cret")) as channel:
                ok = channel.on_topic_event(_event("orders"), timeout=5, metadata=pairs)
                assert ok.status == SUCCESS
                with pytest.raises(grpc.RpcError) as failed:
                    channel.on_topic_event(_event("orders", "slow"), timeout=0.2)
                code = failed.value.code()
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    # The App refuses a wrong token: the first event arriving proves only the channel's went.
    assert seen[0].metadata.get("x-kw") == "1"
