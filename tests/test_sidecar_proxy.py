"""The sidecar's transparent proxy, end to end over real servers on 127.0.0.1.

Callers are plain grpcio stubs (sync, and grpc.aio in their own ``asyncio.run``); the sidecars
run on a background loop (:mod:`support_sidecar`); the app is the scripted servicer of
:mod:`support_harness`. ``hops`` 1 is caller -> app's sidecar -> app; 2 is caller -> front
sidecar -> app's sidecar -> app.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2
from support_harness import (
    METHODS,
    SHAPES,
    SS,
    US,
    UU,
    call_aio,
    call_sync,
    expected,
    free_port,
    wait_until,
)
from support_sidecar import (
    APP,
    APP_TOKEN,
    CALLER_TOKEN,
    CLUSTER_TOKEN,
    FRONT,
    Mesh,
    app_process,
    call_metadata,
    loop_thread,
    mesh,
    start_sidecar,
)

from grpc_channel.sidecar import (
    PEERS_ENV,
    PeersFileError,
    PeersResolver,
    Sidecar,
    SidecarTokens,
    UnknownAppError,
    parse_peers_env,
)

HOPS = (1, 2)
SECRETS = (APP_TOKEN, CALLER_TOKEN, CLUSTER_TOKEN)


def _call(port: int, shape: str, request: bytes, metadata: Any, aio: bool, **kw: Any) -> Any:
    """One call of ``shape`` through the sidecar at ``port``; the response messages."""
    if not aio:
        with _sync_channel(port) as channel:
            return call_sync(channel, shape, request, metadata=metadata, **kw)

    async def run() -> list[bytes]:
        async with _aio_channel(port) as channel:
            return await call_aio(channel, shape, request, metadata=metadata, **kw)

    return asyncio.run(run())


def _sync_channel(port: int) -> Any:
    """A plain sync channel to 127.0.0.1:``port`` (a context manager; typed loosely so that
    raw-bytes multicallables need no serializer arguments)."""
    return grpc.insecure_channel(f"127.0.0.1:{port}")


def _aio_channel(port: int) -> Any:
    return grpc.aio.insecure_channel(f"127.0.0.1:{port}")


def _error(port: int, request: bytes, metadata: Any, aio: bool, **kw: Any) -> Any:
    """The error a unary call through ``port`` fails with."""
    with pytest.raises(grpc.RpcError) as raised:
        _call(port, "unary_unary", request, metadata, aio, **kw)
    return raised.value


def _token_values(pairs: Any) -> list[Any]:
    return [v for k, v in pairs if k == "dapr-api-token"]


# --- all four shapes, one and two hops ------------------------------------------------------------


@pytest.mark.parametrize("aio", [False, True])
@pytest.mark.parametrize("hops", HOPS)
@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_passes_through(shape: str, hops: int, aio: bool) -> None:
    with mesh(aio_app=aio) as m:
        port, token = m.route(hops)
        replies = _call(port, shape, b"hello", call_metadata(token), aio)
        assert replies == expected(shape, b"hello")
        seen = m.rec.seen[-1]
        assert seen.method == METHODS[shape]
        # The app sees its own token once, never the caller's or the cluster's.
        assert _token_values(seen.pairs) == [APP_TOKEN]
        assert seen.metadata["dapr-caller-app-id"] == (FRONT if hops == 2 else APP)
        assert "dapr-app-id" not in seen.metadata
        assert "dapr-callee-app-id" not in seen.metadata


@pytest.mark.parametrize("hops", HOPS)
def test_callee_header_wins_over_app_id(hops: int) -> None:
    with mesh() as m:
        port, token = m.route(hops)
        metadata = (
            ("dapr-api-token", token),
            ("dapr-app-id", "nobody"),
            ("dapr-callee-app-id", APP),
        )
        assert _call(port, "unary_unary", b"x", metadata, False) == [b"echo:x"]


# --- metadata and status --------------------------------------------------------------------------

_FAILING = (
    b"header=x-h:1,x-h-bin:00ff;trailer=x-t:2,x-t-bin:0102;details;abort=INVALID_ARGUMENT:bad name"
)


def _status_details(trailers: Any) -> status_pb2.Status:
    raw = dict(trailers)["grpc-status-details-bin"]
    return status_pb2.Status.FromString(raw)


@pytest.mark.parametrize("aio", [False, True])
@pytest.mark.parametrize("hops", HOPS)
def test_failure_headers_trailers_and_details_pass_through(hops: int, aio: bool) -> None:
    with mesh() as m:
        port, token = m.route(hops)
        sent = call_metadata(token, APP, ("x-in", "v"), ("x-in-bin", b"\x00\x01\xff"))
        err = _error(port, _FAILING, sent, aio)
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert err.details() == "bad name"
        headers = tuple(err.initial_metadata())
        assert ("x-h", "1") in headers and ("x-h-bin", b"\x00\xff") in headers
        trailers = tuple(err.trailing_metadata())
        assert ("x-t", "2") in trailers and ("x-t-bin", b"\x01\x02") in trailers
        status = _status_details(trailers)
        assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert status.message == "bad name"
        bad_request = error_details_pb2.BadRequest()
        assert status.details[0].Unpack(bad_request)
        assert bad_request.field_violations[0].field == "name"
        # The app got the caller's metadata, -bin values as bytes, unchanged.
        seen = m.rec.seen[-1].pairs
        assert ("x-in", "v") in seen and ("x-in-bin", b"\x00\x01\xff") in seen


@pytest.mark.parametrize("hops", HOPS)
def test_streaming_headers_and_trailers_pass_through(hops: int) -> None:
    with mesh() as m:
        port, token = m.route(hops)
        with _sync_channel(port) as channel:
            call = channel.stream_stream(SS)(
                iter([b"header=x-h:1,x-b-bin:ab;trailer=x-t:2", b"more"]),
                metadata=call_metadata(token),
            )
            assert ("x-h", "1") in tuple(call.initial_metadata())
            assert list(call) == [b"header=x-h:1,x-b-bin:ab;trailer=x-t:2", b"more"]
            assert ("x-b-bin", b"\xab") in tuple(call.initial_metadata())
            assert ("x-t", "2") in tuple(call.trailing_metadata())
            assert call.code() is grpc.StatusCode.OK


def test_reserved_and_hop_keys_are_not_forwarded() -> None:
    with mesh() as m:
        port, token = m.route(2)
        sent = call_metadata(token, APP, ("x-keep", "k"), ("dapr-caller-app-id", "spoofed"))
        (reply,) = _call(port, "unary_unary", b"raw", sent, False)
        keys = [k for k, _ in json.loads(reply)]
        assert "x-keep" in keys
        for dropped in ("dapr-app-id", "dapr-callee-app-id", "grpc-timeout", "te"):
            assert dropped not in keys
        caller = [v for k, v in json.loads(reply) if k == "dapr-caller-app-id"]
        assert caller == [FRONT]  # set by the front sidecar, not by the caller
        assert [v for k, v in json.loads(reply) if k == "dapr-api-token"] == [APP_TOKEN]


# --- deadline and cancellation --------------------------------------------------------------------


@pytest.mark.parametrize("aio", [False, True])
@pytest.mark.parametrize("hops", HOPS)
def test_the_callers_deadline_reaches_the_app(hops: int, aio: bool) -> None:
    with mesh() as m:
        port, token = m.route(hops)
        assert _call(port, "unary_unary", b"plain", call_metadata(token), aio, timeout=20) == [
            b"plain"
        ]
        remaining = m.rec.remaining[-1]
        # Not "< 20": grpc core converts deadlines between its monotonic and wall clocks, which
        # can add a fraction of a second; the point is that the caller's deadline arrived.
        assert remaining is not None and 10 < remaining <= 21


def test_no_deadline_stays_no_deadline() -> None:
    with mesh() as m:
        port, token = m.route(2)
        _call(port, "unary_unary", b"plain", call_metadata(token), False)
        assert m.rec.remaining[-1] is None


def test_an_expired_deadline_ends_the_call_everywhere() -> None:
    with mesh() as m:
        port, token = m.route(2)
        err = _error(port, b"sleep=30", call_metadata(token), False, timeout=0.5)
        assert err.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert wait_until(lambda: m.rec.ended == 1)


def _zero_in_flight(m: Mesh) -> bool:
    return m.front_sidecar.in_flight == 0 and m.app_sidecar.in_flight == 0


@pytest.mark.parametrize("hops", HOPS)
@pytest.mark.parametrize("path", [UU, SS])
def test_caller_cancellation_reaches_the_app(hops: int, path: str) -> None:
    with mesh() as m:
        port, token = m.route(hops)
        with _sync_channel(port) as channel:
            future: Any
            if path == UU:
                future = channel.unary_unary(UU).future(b"sleep=30", metadata=call_metadata(token))
            else:
                future = channel.stream_stream(SS)(
                    iter([b"sleep=30"]), metadata=call_metadata(token)
                )
            assert wait_until(lambda: m.rec.handled == 1)
            future.cancel()
            # The app's handler sees its call end (its sleep ends early) and leaves.
            assert wait_until(lambda: m.rec.ended == 1)
        assert wait_until(lambda: _zero_in_flight(m))


def test_aio_caller_cancellation_reaches_the_app() -> None:
    with mesh() as m:
        port, token = m.route(2)

        async def run() -> None:
            async with _aio_channel(port) as channel:
                call = channel.unary_stream(US)(b"stay_open", metadata=call_metadata(token))
                assert await call.read() == b"0:stay_open"
                call.cancel()
                assert await call.code() is grpc.StatusCode.CANCELLED

        asyncio.run(run())
        assert wait_until(lambda: m.rec.ended == 1)
        assert wait_until(lambda: _zero_in_flight(m))


# --- tokens and routing errors --------------------------------------------------------------------


@pytest.mark.parametrize("aio", [False, True])
@pytest.mark.parametrize(
    ("hops", "token"),
    [
        (1, None),
        (1, "wrong"),
        (1, CALLER_TOKEN),  # the front's callers' token is not the cluster's
        (2, None),
        (2, "wrong"),
        (2, CLUSTER_TOKEN),
    ],
)
def test_a_missing_or_wrong_token_is_unauthenticated(
    hops: int, token: str | None, aio: bool
) -> None:
    with mesh() as m:
        port, _ = m.route(hops)
        err = _error(port, b"x", call_metadata(token), aio)
        assert err.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "dapr-api-token" in (err.details() or "")
        assert not any(secret in (err.details() or "") for secret in SECRETS)
        assert m.rec.handled == 0


def test_a_repeated_token_is_unauthenticated() -> None:
    with mesh() as m:
        port, token = m.route(2)
        err = _error(port, b"x", (*call_metadata(token), ("dapr-api-token", token)), False)
        assert err.code() is grpc.StatusCode.UNAUTHENTICATED
        assert m.rec.handled == 0


@pytest.mark.parametrize("aio", [False, True])
def test_an_unknown_app_id_is_not_found_naming_it(aio: bool) -> None:
    with mesh() as m:
        port, token = m.route(2)
        err = _error(port, b"x", call_metadata(token, "billing"), aio)
        assert err.code() is grpc.StatusCode.NOT_FOUND
        assert "'billing'" in (err.details() or "")


@pytest.mark.parametrize("hops", HOPS)
def test_no_target_header_is_a_clear_error(hops: int) -> None:
    with mesh() as m:
        port, token = m.route(hops)
        err = _error(port, b"x", call_metadata(token, None), False)
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "dapr-app-id" in (err.details() or "")
        assert m.rec.handled == 0


def test_the_own_id_without_an_app_address_is_failed_precondition() -> None:
    with mesh() as m:
        port, token = m.route(2)
        err = _error(port, b"x", call_metadata(token, FRONT), False)
        assert err.code() is grpc.StatusCode.FAILED_PRECONDITION


# --- name resolution ------------------------------------------------------------------------------


def test_the_peers_file_is_reloaded(tmp_path: Any) -> None:
    peers = tmp_path / "peers.json"
    peers.write_text(json.dumps({APP: f"127.0.0.1:{free_port()}"}))
    with mesh() as m:
        front = Sidecar(
            "other",
            resolver=PeersResolver(peers, environ={}, recheck_seconds=0),
            api_token=CALLER_TOKEN,
            peer_token=CLUSTER_TOKEN,
        )
        start_sidecar(m.loop, front)
        try:
            metadata = call_metadata(CALLER_TOKEN)
            err = _error(front.port, b"x", metadata, False)
            assert err.code() is grpc.StatusCode.UNAVAILABLE  # nobody listens there
            peers.write_text(f"# now YAML\n{APP}: 127.0.0.1:{m.app_sidecar.port}\nz: h:1\n")
            assert _call(front.port, "unary_unary", b"x", metadata, False) == [b"echo:x"]
            assert m.rec.seen[-1].metadata["dapr-caller-app-id"] == "other"
        finally:
            m.loop.run(front.stop(None))


def test_resolver_sources_and_precedence(tmp_path: Any) -> None:
    path = tmp_path / "peers.yaml"
    path.write_text("a: file:1\n")
    env = {PEERS_ENV: " a=env:1, b=env:2 ,,c=[::1]:3"}
    resolver = PeersResolver(path, peers={"b": "code:1", "d": "code:4"}, environ=env)
    assert resolver.peers() == {"a": "file:1", "b": "env:2", "c": "[::1]:3", "d": "code:4"}
    with pytest.raises(UnknownAppError) as unknown:
        resolver.resolve("e")
    assert unknown.value.app_id == "e" and "'e'" in str(unknown.value)


def test_resolver_rechecks_at_most_every_interval_and_keeps_the_last_good_file(
    tmp_path: Any,
) -> None:
    path = tmp_path / "peers.json"
    path.write_text('{"a": "h:1"}')
    now = [0.0]
    resolver = PeersResolver(path, environ={}, clock=lambda: now[0])
    path.write_text('{"a": "h:22"}')
    assert resolver.resolve("a") == "h:1"  # not rechecked yet
    now[0] = 1.0
    assert resolver.resolve("a") == "h:22"
    path.write_text('{"a": ')  # half written
    now[0] = 2.0
    assert resolver.resolve("a") == "h:22"
    assert resolver.last_error is not None and "peers.json" in resolver.last_error
    path.write_text('{"a": "h:333"}')
    now[0] = 3.0
    assert resolver.resolve("a") == "h:333" and resolver.last_error is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "expected a mapping"),
        ('{"a": "nohost"}', "is not 'host:port'"),
        ('{"a": "h:0"}', "1..65535"),
        ('{"a": 5}', "must be a 'host:port' string"),
        ('{"": "h:1"}', "non-empty"),
        ("a: [", "not valid JSON or YAML"),
    ],
)
def test_a_bad_peers_file_is_refused_naming_the_problem(
    tmp_path: Any, text: str, message: str
) -> None:
    path = tmp_path / "peers.json"
    path.write_text(text)
    with pytest.raises(PeersFileError, match=message):
        PeersResolver(path, environ={})


def test_a_missing_peers_file_and_bad_env_are_refused(tmp_path: Any) -> None:
    with pytest.raises(PeersFileError, match="peers file"):
        PeersResolver(tmp_path / "absent.json", environ={})
    with pytest.raises(PeersFileError, match="is not 'id=host:port'"):
        parse_peers_env("a:1")
    assert parse_peers_env("") == {}


# --- load, limits and shutdown --------------------------------------------------------------------


def test_500_concurrent_calls_through_two_sidecars_each_get_their_own_reply() -> None:
    with mesh() as m:
        port, token = m.route(2)

        async def run() -> list[tuple[bytes, bytes]]:
            async with _aio_channel(port) as channel:
                method = channel.unary_unary(UU)

                async def one(i: int) -> tuple[bytes, bytes]:
                    request = b"plain;n=%d;" % i + bytes([i % 256]) * (i % 97)
                    return request, await method(request, metadata=call_metadata(token))

                return await asyncio.gather(*(one(i) for i in range(500)))

        pairs = asyncio.run(run())
        assert len(pairs) == 500
        assert all(request == reply for request, reply in pairs)
        assert m.rec.handled == 500


def test_max_in_flight_refuses_with_resource_exhausted() -> None:
    with mesh(front_kw={"max_in_flight": 2}) as m:
        port, token = m.route(2)

        async def run() -> None:
            async with _aio_channel(port) as channel:
                method = channel.unary_unary(UU)
                held = [
                    asyncio.ensure_future(method(b"hold;plain", metadata=call_metadata(token)))
                    for _ in range(2)
                ]
                while m.rec.running < 2:
                    await asyncio.sleep(0.005)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await method(b"x", metadata=call_metadata(token))
                assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "2 calls in flight" in (refused.value.details() or "")
                m.rec.gate.set()
                assert await asyncio.gather(*held) == [b"hold;plain"] * 2
                # Slots are given back: the next call goes through.
                assert await method(b"y", metadata=call_metadata(token)) == b"echo:y"

        asyncio.run(run())


def test_an_evicted_upstream_channel_lets_its_calls_finish() -> None:
    """With room for one cached channel, a call to a second address evicts the first channel;
    the call still in flight on it finishes normally."""
    with mesh() as m:
        sidecar_port = m.app_sidecar.port
        peers = {APP: f"127.0.0.1:{sidecar_port}", "alias": f"localhost:{sidecar_port}"}
        front = Sidecar(
            "other",
            resolver=PeersResolver(peers=peers, environ={}),
            peer_token=CLUSTER_TOKEN,
            max_channels=1,
        )
        start_sidecar(m.loop, front)
        try:
            with _sync_channel(front.port) as channel:
                method = channel.unary_unary(UU)
                held = method.future(b"hold;plain", metadata=call_metadata(None))
                assert wait_until(lambda: m.rec.running == 1)
                # "alias" is delivered to the app sidecar as a call for app "alias" (not its
                # own id, and unknown to it): NOT_FOUND, after the front opened a 2nd channel.
                with pytest.raises(grpc.RpcError) as raised:
                    method(b"x", metadata=call_metadata(None, "alias"))
                assert raised.value.code() is grpc.StatusCode.NOT_FOUND
                m.rec.gate.set()
                assert held.result(timeout=30) == b"hold;plain"
        finally:
            m.loop.run(front.stop(None))


def test_message_size_limit_is_settable() -> None:
    with mesh(front_kw={"max_message_bytes": 1024}) as m:
        port, token = m.route(2)
        assert _call(port, "unary_unary", b"plain;" + b"a" * 900, call_metadata(token), False)
        err = _error(port, b"plain;" + b"a" * 2048, call_metadata(token), False)
        assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert m.rec.handled == 1


@pytest.mark.parametrize("aio", [False, True])
def test_killing_the_app_mid_stream_ends_the_call_with_unavailable(aio: bool) -> None:
    with loop_thread() as loop, app_process() as (app, app_port):
        sidecar = start_sidecar(
            loop,
            Sidecar(APP, resolver=PeersResolver(environ={}), app_address=f"127.0.0.1:{app_port}"),
        )
        try:
            if not aio:
                with _sync_channel(sidecar.port) as channel:
                    call = channel.unary_stream(US)(
                        b"stay_open", metadata=call_metadata(None), timeout=60
                    )
                    assert next(call) == b"0:stay_open"
                    app.kill()
                    with pytest.raises(grpc.RpcError) as raised:
                        next(call)
                    code = raised.value.code()
            else:

                async def run() -> grpc.StatusCode:
                    async with _aio_channel(sidecar.port) as channel:
                        call = channel.unary_stream(US)(
                            b"stay_open", metadata=call_metadata(None), timeout=60
                        )
                        assert await call.read() == b"0:stay_open"
                        app.kill()
                        code: grpc.StatusCode = await call.code()
                        return code

                code = asyncio.run(run())
            # Not DEADLINE_EXCEEDED: the caller learnt at once, it did not wait out its deadline.
            assert code is grpc.StatusCode.UNAVAILABLE
            assert wait_until(lambda: sidecar.in_flight == 0)
        finally:
            loop.run(sidecar.stop(None))


def test_stop_drains_an_in_flight_call() -> None:
    with mesh() as m:
        port, token = m.route(1)
        with _sync_channel(port) as channel:
            future = channel.unary_unary(UU).future(b"hold;plain", metadata=call_metadata(token))
            assert wait_until(lambda: m.rec.running == 1)
            stopping = asyncio.run_coroutine_threadsafe(m.app_sidecar.stop(30), m.loop.loop)
            m.rec.gate.set()
            assert future.result(timeout=30) == b"hold;plain"
            stopping.result(timeout=30)
        err = _error(port, b"x", call_metadata(token), False)
        assert err.code() is grpc.StatusCode.UNAVAILABLE


# --- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"max_message_bytes": -1}, "max_message_bytes"),
        ({"api_token": ""}, "api_token is empty"),
        ({"app_token": "bad\n"}, "app_token must be printable ASCII"),
        ({"app_address": "nowhere"}, "'host:port'"),
        ({"host": ""}, "host"),
    ],
)
def test_bad_settings_are_refused_naming_them(kw: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        Sidecar(APP, resolver=PeersResolver(environ={}), **kw)


def test_the_sidecar_listens_on_loopback_by_default() -> None:
    sidecar = Sidecar(APP, resolver=PeersResolver(environ={}))
    assert sidecar.host == "127.0.0.1"
    with pytest.raises(RuntimeError, match="not started"):
        _ = sidecar.port


def test_tokens_from_env_and_their_repr_hides_values() -> None:
    tokens = SidecarTokens.from_env({"DAPR_API_TOKEN": "s3cret", "APP_API_TOKEN": ""})
    assert tokens.api_token == tokens.peer_token == "s3cret"
    assert tokens.app_token is None
    assert "s3cret" not in repr(tokens) and "api_token=set" in repr(tokens)


# --- unary calls: every detail through one and two hops ----------------------------------------


@pytest.mark.parametrize("aio", [False, True])
@pytest.mark.parametrize("hops", HOPS)
def test_a_unary_call_passes_metadata_status_and_deadline(hops: int, aio: bool) -> None:
    with mesh() as m:
        port, token = m.route(hops)
        sent = call_metadata(token, APP, ("x-in", "v"), ("x-in-bin", b"\x00\x01\xff"))
        assert _call(port, "unary_unary", b"hi", sent, aio, timeout=20) == [b"echo:hi"]
        seen = m.rec.seen[-1]
        assert seen.method == UU
        assert _token_values(seen.pairs) == [APP_TOKEN]
        assert ("x-in", "v") in seen.pairs and ("x-in-bin", b"\x00\x01\xff") in seen.pairs
        assert seen.metadata["dapr-caller-app-id"] == (FRONT if hops == 2 else APP)
        remaining = m.rec.remaining[-1]
        assert remaining is not None and 10 < remaining <= 21
        # A failure: the app's headers, trailers, code, message and google.rpc details arrive.
        err = _error(port, _FAILING, sent, aio)
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert err.details() == "bad name"
        headers = tuple(err.initial_metadata())
        assert ("x-h", "1") in headers and ("x-h-bin", b"\x00\xff") in headers
        trailers = tuple(err.trailing_metadata())
        assert ("x-t", "2") in trailers and ("x-t-bin", b"\x01\x02") in trailers
        assert _status_details(trailers).message == "bad name"
        assert m.rec.remaining[-1] is None  # no deadline stays no deadline
        assert _zero_in_flight(m)


@pytest.mark.parametrize("hops", HOPS)
def test_a_unary_calls_headers_and_trailers_on_success(hops: int) -> None:
    with mesh() as m:
        port, token = m.route(hops)
        with _sync_channel(port) as channel:
            reply, call = channel.unary_unary(UU).with_call(
                b"header=x-h:1,x-b-bin:ab;trailer=x-t:2,x-t-bin:0102",
                metadata=call_metadata(token),
            )
        assert reply == b"echo:header=x-h:1,x-b-bin:ab;trailer=x-t:2,x-t-bin:0102"
        assert ("x-h", "1") in call.initial_metadata()
        assert ("x-b-bin", b"\xab") in call.initial_metadata()
        assert ("x-t", "2") in call.trailing_metadata()
        assert ("x-t-bin", b"\x01\x02") in call.trailing_metadata()


@pytest.mark.parametrize("hops", HOPS)
def test_a_unary_call_cancelled_or_expired_ends_at_the_app(hops: int) -> None:
    with mesh() as m:
        port, token = m.route(hops)
        with _sync_channel(port) as channel:
            future = channel.unary_unary(UU).future(b"sleep=30", metadata=call_metadata(token))
            assert wait_until(lambda: m.rec.handled == 1)
            future.cancel()
            assert wait_until(lambda: m.rec.ended == 1)
        assert wait_until(lambda: _zero_in_flight(m))
        err = _error(port, b"sleep=30", call_metadata(token), False, timeout=0.5)
        assert err.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert wait_until(lambda: m.rec.ended == 2)
        assert wait_until(lambda: _zero_in_flight(m))


def test_a_unary_call_holds_an_app_slot_and_tells_the_observer() -> None:
    events: list[tuple[str, Any]] = []

    class Call:
        def forward_metadata(self, pairs: Any) -> Any:
            return (*pairs, ("x-observed", "1"))

        def end(self, code: grpc.StatusCode) -> None:
            events.append(("end", code))

    class Observer:
        def begin(self, method: str, target: str, local: bool, incoming: Any) -> Call:
            events.append(("begin", (method, target, local)))
            return Call()

    app_kw = {"app_max_concurrency": 1, "observer": Observer()}
    with mesh(app_kw=app_kw) as m:
        port, token = m.route(1)
        with _sync_channel(port) as channel:
            held = channel.unary_unary(UU).future(b"sleep=30", metadata=call_metadata(token))
            assert wait_until(lambda: m.rec.handled == 1)
            # The one slot is taken: a second call waits for it and gives up at its deadline.
            err = _error(port, b"x", call_metadata(token), False, timeout=0.3)
            assert err.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert m.rec.handled == 1
            held.cancel()
            assert wait_until(lambda: m.app_sidecar.in_flight == 0)
            assert _call(port, "unary_unary", b"ok", call_metadata(token), False) == [b"echo:ok"]
        assert ("x-observed", "1") in m.rec.seen[-1].pairs
        assert events.count(("begin", (UU, APP, True))) == 3
        ends = [code for kind, code in events if kind == "end"]
        # Each call ends once. The waiter's end is DEADLINE_EXCEEDED when the sidecar's slot wait
        # gives up first, CANCELLED when the caller's expiry cancels the sidecar's handler first.
        assert len(ends) == 3 and ends[-1] is grpc.StatusCode.OK
        stopped = {grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED}
        assert set(ends[:2]) <= stopped
