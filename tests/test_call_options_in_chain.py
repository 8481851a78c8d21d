"""One call record: the policies of a chain see each call's call options as ``call.options``.

However the chain sits under the call-option engine (``chain.wrap``, ``grpc.intercept_channel``,
grpc.aio interceptors, the app channel's own policies) and whatever the call shape, a policy reads
the folded values and the option objects themselves; a call made through grpcio's own API has
none; and a call a policy makes from inside another call does not inherit them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from support_channel import OwnApp
from support_options import echo_modules, serve

from grpc_channel.call_options import call_metadata, header, timeout
from grpc_channel.channel import Channel
from grpc_channel.dial_options import with_chain_unary_interceptor, with_default_call_options
from grpc_channel.interceptors import ClientCall, ClientPolicy, compose, handing_over
from grpc_channel.invoke import InvokeMethodRequest
from grpc_channel.metadata import Metadata
from grpc_channel.stubs import wrap

MODES = ("wrap", "icpt")
SHAPES = ("Unary", "ServerStream", "ClientStream", "Bidi")


class SeesOptions(ClientPolicy):
    """Notes, per call, the method and what ``call.options`` held when the policy started."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def client_start(self, call: ClientCall) -> None:
        info = call.options
        if info is None:
            self.seen.append((call.method, None))
            return
        self.seen.append(
            (
                call.method,
                {
                    "timeout": info.timeout,  # type: ignore[attr-defined]
                    "keys": [k for k, _ in info.metadata],  # type: ignore[attr-defined]
                    "options": info.call_options,  # type: ignore[attr-defined]
                },
            )
        )


def _request(pb2: Any, shape: str) -> Any:
    message = pb2.EchoRequest(text="hi", count=2)
    return iter([message]) if shape in ("ClientStream", "Bidi") else message


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", MODES)
def test_sync_policies_see_call_options(mode: str, shape: str) -> None:
    pb2, pb2_grpc = echo_modules()
    policy = SeesOptions()
    chain = compose(policy)
    default = call_metadata("x-default", "d")
    with serve() as (port, _), grpc.insecure_channel(f"127.0.0.1:{port}") as raw:
        channel = (
            chain.wrap(raw)
            if mode == "wrap"
            else grpc.intercept_channel(raw, *chain.client_interceptors())
        )
        stub = wrap(pb2_grpc.EchoStub, channel, default)
        limit, captured = timeout(7.5), header(Metadata())
        result = getattr(stub, shape)(_request(pb2, shape), limit, captured)
        if shape in ("ServerStream", "Bidi"):
            assert [r.text for r in result]
        # grpcio's own API on the same channel: no call options exist there.
        pb2_grpc.EchoStub(channel).Unary(pb2.EchoRequest(text="plain"))
    (method, seen), (plain_method, plain) = policy.seen
    assert method == f"/grpc_channel_test.Echo/{shape}"
    assert seen["timeout"] == 7.5
    assert "x-default" in seen["keys"]
    assert seen["options"] == (default, limit, captured)
    assert plain_method == "/grpc_channel_test.Echo/Unary"
    assert plain is None


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", MODES)
def test_aio_policies_see_call_options(mode: str, shape: str) -> None:
    pb2, pb2_grpc = echo_modules()
    policy = SeesOptions()
    chain = compose(policy)

    async def main(port: int) -> None:
        target = f"127.0.0.1:{port}"
        if mode == "wrap":
            raw = grpc.aio.insecure_channel(target)
            channel: Any = chain.wrap_aio(raw)
        else:
            raw = channel = grpc.aio.insecure_channel(
                target, interceptors=chain.aio_client_interceptors()
            )
        try:
            stub = wrap(pb2_grpc.EchoStub, channel)
            limit = timeout(4.0)
            requests: Any = _request(pb2, shape)
            if shape in ("ServerStream", "Bidi"):
                assert [r.text async for r in getattr(stub, shape)(requests, limit)]
            else:
                assert (await getattr(stub, shape)(requests, limit)).text
            await pb2_grpc.EchoStub(channel).Unary(pb2.EchoRequest(text="plain"))
        finally:
            await raw.close(None)

    with serve() as (port, _):
        asyncio.run(main(port))
    (method, seen), (_, plain) = policy.seen
    assert method == f"/grpc_channel_test.Echo/{shape}"
    assert seen["timeout"] == 4.0
    assert len(seen["options"]) == 1
    assert plain is None


def test_the_app_channel_policies_see_invoke_method_options(own_app: OwnApp) -> None:
    policy = SeesOptions()
    interceptor = compose(policy).client_interceptors()[0]
    default = call_metadata("x-tenant", "t1")
    with Channel.local(
        own_app.port, with_chain_unary_interceptor(interceptor), with_default_call_options(default)
    ) as channel:
        limit = timeout(9.0)
        response = channel.invoke_method(InvokeMethodRequest("echo").with_data(b"x"), limit)
        assert response.status.code == 0
        plain = channel.invoke_method(InvokeMethodRequest("echo").with_data(b"y"))
        assert plain.status.code == 0
    (_, seen), (_, without) = policy.seen
    assert seen["timeout"] == 9.0
    assert seen["options"] == (default, limit)
    assert "x-tenant" in seen["keys"]
    # Options at dial level make every call carry a record, its own options or none.
    assert without is not None and without["options"] == (default,)


def test_without_any_call_option_a_call_carries_no_record(own_app: OwnApp) -> None:
    policy = SeesOptions()
    interceptor = compose(policy).client_interceptors()[0]
    with Channel.local(own_app.port, with_chain_unary_interceptor(interceptor)) as channel:
        assert channel.invoke_method(InvokeMethodRequest("echo")).status.code == 0
        assert channel.health_probe()
    (_, invoked), (_, probed) = policy.seen
    assert invoked is None
    # The probe sets its own timeout, so it has a record.
    assert probed is not None and probed["timeout"] > 0


class _Record:
    def __init__(self, method: str) -> None:
        self.method = method
        self.claimed = False


def test_a_record_is_taken_once_and_only_by_its_method() -> None:
    record = _Record("/a.B/C")
    handed = handing_over(record)
    try:
        other = ClientCall("/a.B/Other", None, [], None, None, 0.0)  # type: ignore[arg-type]
        first = ClientCall("/a.B/C", None, [], None, None, 0.0)  # type: ignore[arg-type]
        nested = ClientCall("/a.B/C", None, [], None, None, 0.0)  # type: ignore[arg-type]
    finally:
        handed.var.reset(handed)
    after = ClientCall("/a.B/C", None, [], None, None, 0.0)  # type: ignore[arg-type]
    assert other.options is None
    assert first.options is record
    assert nested.options is None
    assert after.options is None
