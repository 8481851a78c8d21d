"""Options (grpc_channel.defaults, .call_options, .dial_options, .dialing): option records,
validation messages, folding, opening channels."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import grpc
import pytest
from support_options import echo_modules, serve

from grpc_channel import call_options as co
from grpc_channel import dial_options as do
from grpc_channel import dialing as dl
from grpc_channel.defaults import DEFAULTS, OptionError
from grpc_channel.encoding import get_codec
from grpc_channel.metadata import Metadata

# ------------------------------------------------------------------------------------------
# Records: each option exposes what it sets.


def test_call_option_records() -> None:
    md = Metadata()
    assert co.header(md).md is md
    assert co.trailer(md).md is md
    holder = co.Peer()
    assert co.peer(holder).holder is holder
    assert co.wait_for_ready().wait_for_ready is True
    assert co.wait_for_ready(False).wait_for_ready is False
    assert co.timeout(2).timeout == 2.0
    assert co.call_metadata("k", "v", "k", "w").pairs == (("k", "v"), ("k", "w"))
    assert co.call_metadata({"a": "1"}).pairs == (("a", "1"),)
    assert co.metadata is co.call_metadata  # the brief's spelling, module-level only
    assert co.call_metadata(Metadata.pairs("x-bin", b"\x00")).pairs == (("x-bin", b"\x00"),)
    assert co.use_compressor("GZIP") == co.CompressorCallOption("gzip", grpc.Compression.Gzip)
    assert co.call_content_subtype("JSON").content_subtype == "json"
    assert co.call_content_subtype("json").codec is get_codec("json")
    assert co.force_codec(get_codec("raw")).codec.name == "raw"
    assert co.max_call_recv_msg_size(10).max_recv_msg_size == 10
    assert co.max_call_send_msg_size(0).max_send_msg_size == 0
    creds = grpc.access_token_call_credentials("t")
    assert co.per_rpc_credentials(creds).creds is creds
    with pytest.raises(AttributeError):
        co.timeout(1).timeout = 3  # type: ignore[misc]  # frozen records


def test_dial_option_records_and_defaults() -> None:
    s = do.fold_dial_options()
    assert s.max_recv_msg_size == DEFAULTS.max_recv_msg_size == 4 * 1024 * 1024
    assert s.max_send_msg_size is None
    assert s.codec.name == "proto"
    assert s.max_concurrency == 0
    assert not s.insecure and s.credentials is None
    assert s.grpc_options() == []
    assert DEFAULTS.base_delay == 1.0 and DEFAULTS.multiplier == 1.6
    assert DEFAULTS.jitter == 0.2 and DEFAULTS.max_delay == 120.0
    assert DEFAULTS.min_connect_timeout == 20.0

    s = do.fold_dial_options(
        do.with_insecure(),
        do.with_authority("svc.local"),
        do.with_user_agent("my-app/1"),
        do.with_keepalive_params(30, 5, permit_without_stream=True),
        do.with_max_recv_msg_size(100),
        do.with_max_send_msg_size(200),
        do.with_default_service_config({"loadBalancingConfig": [{"round_robin": {}}]}),
        do.with_disable_retry(),
        do.with_connect_params(base_delay=0.5, max_delay=3, min_connect_timeout=2.5),
        do.with_channel_args(("grpc.http2.max_pings_without_data", 0)),
        do.with_max_concurrency(-3),
    )
    assert s.insecure and s.max_concurrency == 0
    assert s.grpc_options() == [
        ("grpc.default_authority", "svc.local"),
        ("grpc.primary_user_agent", "my-app/1"),
        ("grpc.keepalive_time_ms", 30000),
        ("grpc.keepalive_timeout_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.max_receive_message_length", 100),
        ("grpc.max_send_message_length", 200),
        ("grpc.service_config", '{"loadBalancingConfig": [{"round_robin": {}}]}'),
        ("grpc.enable_retries", 0),
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 3000),
        ("grpc.min_reconnect_backoff_ms", 2500),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    params = do.with_connect_params().params
    assert params == do.ConnectParams(do.BackoffConfig(1.0, 1.6, 0.2, 120.0), 20.0)


def test_dial_folding_later_wins() -> None:
    creds = grpc.ssl_channel_credentials()
    s = do.fold_dial_options(do.with_insecure(), do.with_transport_credentials(creds))
    assert s.credentials is creds and not s.insecure and s.secure
    s = do.fold_dial_options(do.with_transport_credentials(creds), do.with_insecure())
    assert s.credentials is None and s.insecure and not s.secure
    s = do.fold_dial_options(do.with_authority("a"), do.with_authority("b"), do.with_codec("json"))
    assert s.authority == "b" and s.codec.name == "json"
    s = do.fold_dial_options(do.with_compressor("gzip"), do.with_compressor("deflate"))
    assert s.compressor == "deflate"
    a, b = co.timeout(1), co.timeout(2)
    s = do.fold_dial_options(do.with_default_call_options(a), do.with_default_call_options(b))
    assert s.default_call_options == (a, b)
    s = do.fold_dial_options(do.with_app_token("secret"), do.with_app_token())
    assert s.app_token is None and s.app_token_from_env
    assert "secret" not in repr(do.with_app_token("secret"))


def test_interceptor_order_single_first() -> None:
    class U(grpc.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            return continuation(details, request)

    class St(grpc.StreamStreamClientInterceptor):  # type: ignore[type-arg]
        def intercept_stream_stream(self, continuation: Any, details: Any, it: Any) -> Any:
            return continuation(details, it)

    u1, u2, u3, s1, s2 = U(), U(), U(), St(), St()
    s = do.fold_dial_options(
        do.with_chain_unary_interceptor(u2, u3),
        do.with_unary_interceptor(u1),
        do.with_chain_stream_interceptor(s2),
        do.with_stream_interceptor(s1),
    )
    assert s.unary_interceptors == (u1, u2, u3)
    assert s.stream_interceptors == (s1, s2)


# ------------------------------------------------------------------------------------------
# Refused input: the exact messages.

# Deliberately wrong arguments: go through Any so the type checker lets them pass.
# Typed Any: the cases pass wrong argument types on purpose.
_co: Any = co
_do: Any = do

_REFUSALS: list[tuple[Any, str]] = [
    (lambda: _co.timeout(0), "timeout: got 0; seconds must be a finite number > 0"),
    (lambda: _co.timeout(-1.5), "timeout: got -1.5; seconds must be a finite number > 0"),
    (lambda: _co.timeout(math.inf), "timeout: got inf; seconds must be a finite number > 0"),
    (lambda: _co.timeout(True), "timeout: got True; seconds must be a finite number > 0"),
    (lambda: _co.timeout("2"), "timeout: got '2'; seconds must be a finite number > 0"),
    (lambda: _co.wait_for_ready(1), "wait_for_ready: got 1; pass True or False"),
    (lambda: _co.header({}), "header: got 'dict'; pass a grpc_channel.metadata.Metadata to fill"),
    (
        lambda: _co.trailer(None),
        "trailer: got 'NoneType'; pass a grpc_channel.metadata.Metadata to fill",
    ),
    (lambda: _co.peer("x"), "peer: got 'str'; pass a grpc_channel.Peer to fill"),
    (lambda: _co.on_finish(3), "on_finish: got 'int'; pass a callable taking the error"),
    (
        lambda: _co.call_metadata("k"),
        "call_metadata: Metadata.pairs needs an even number of arguments (key, value, ...), got 1",
    ),
    (
        lambda: _co.use_compressor("br"),
        "use_compressor: unknown compressor 'br'; known compressors: deflate, gzip, identity",
    ),
    (
        lambda: _co.per_rpc_credentials("token"),
        "per_rpc_credentials: got 'str'; pass grpc.CallCredentials or an object with "
        "get_request_metadata(method) and require_transport_security()",
    ),
    (
        lambda: _co.call_content_subtype(""),
        "call_content_subtype: got ''; pass a registered codec name",
    ),
    (
        lambda: _co.force_codec(None),
        "force_codec: got None; pass a codec with a name, marshal(obj) and unmarshal(data, type)",
    ),
    (
        lambda: _co.max_call_recv_msg_size(-1),
        "max_call_recv_msg_size: got -1; bytes must be an int from 0 to 2147483647",
    ),
    (
        lambda: _co.max_call_send_msg_size(1.5),
        "max_call_send_msg_size: got 1.5; bytes must be an int from 0 to 2147483647",
    ),
    (
        lambda: _do.with_transport_credentials("tls"),
        "with_transport_credentials: got 'str'; pass grpc.ChannelCredentials "
        "(e.g. grpc.ssl_channel_credentials())",
    ),
    (
        lambda: _do.with_authority(""),
        "with_authority: got ''; authority must be a non-empty string of printable ASCII",
    ),
    (
        lambda: _do.with_authority("a b"),
        "with_authority: got 'a b'; authority must not contain spaces",
    ),
    (
        lambda: _do.with_user_agent("bad\n"),
        "with_user_agent: got 'bad\\n'; user agent must be a non-empty string of printable ASCII",
    ),
    (
        lambda: _do.with_keepalive_params(5),
        "with_keepalive_params: got 5; time must be at least 10 s (grpc-go's minimum)",
    ),
    (
        lambda: _do.with_keepalive_params(10, 0),
        "with_keepalive_params: got 0; seconds must be a finite number > 0",
    ),
    (
        lambda: _do.with_max_recv_msg_size(2**31),
        "with_max_recv_msg_size: got 2147483648; bytes must be an int from 0 to 2147483647",
    ),
    (
        lambda: _do.with_default_service_config("{"),
        "with_default_service_config: got '{'; not valid JSON: Expecting property name enclosed "
        "in double quotes: line 1 column 2 (char 1)",
    ),
    (
        lambda: _do.with_default_service_config("[]"),
        "with_default_service_config: got '[]'; the service config is a JSON object",
    ),
    (
        lambda: _do.with_compressor("zstd"),
        "with_compressor: unknown compressor 'zstd'; known compressors: deflate, gzip, identity",
    ),
    (
        lambda: _do.with_codec("yaml"),
        "with_codec: no codec registered under 'yaml'; registered: json, proto, raw",
    ),
    (
        lambda: _do.with_unary_interceptor(object()),
        "with_unary_interceptor: got 'object'; a unary interceptor implements "
        "grpc.UnaryUnaryClientInterceptor, grpc.aio._interceptor.UnaryUnaryClientInterceptor",
    ),
    (
        lambda: _do.with_chain_stream_interceptor(),
        "with_chain_stream_interceptor: got (); pass at least one stream interceptor",
    ),
    (
        lambda: _do.with_default_call_options(_do.with_insecure()),
        "with_default_call_options: got 'InsecureDialOption'; pass CallOption objects",
    ),
    (
        lambda: _do.with_connect_params(multiplier=2.0),
        "with_connect_params: got 2.0; grpcio's reconnect backoff multiplier is fixed at 1.6 "
        "(grpc core has no channel argument for it)",
    ),
    (
        lambda: _do.with_connect_params(jitter=0.5),
        "with_connect_params: got 0.5; grpcio's reconnect backoff jitter is fixed at 0.2 "
        "(grpc core has no channel argument for it)",
    ),
    (
        lambda: _do.with_connect_params(base_delay=0.05),
        "with_connect_params: got 0.05; grpc core raises backoff delays and the connect timeout "
        "below 0.1 s to 0.1 s; pass at least 0.1",
    ),
    (
        lambda: _do.with_connect_params(min_connect_timeout=0.01),
        "with_connect_params: got 0.01; grpc core raises backoff delays and the connect timeout "
        "below 0.1 s to 0.1 s; pass at least 0.1",
    ),
    (
        lambda: _do.with_connect_params(base_delay=5, max_delay=1),
        "with_connect_params: got 1; max_delay must be >= base_delay (5 s)",
    ),
    (lambda: _do.with_block(0), "with_block: got 0; seconds must be a finite number > 0"),
    (
        lambda: _do.with_channel_args(("grpc.default_authority", "x")),
        "with_channel_args: got 'grpc.default_authority'; this argument is set by with_authority()",
    ),
    (
        lambda: _do.with_channel_args(("grpc.x", 1.5)),
        "with_channel_args: got ('grpc.x', 1.5); values are int or str",
    ),
    (
        lambda: _do.with_channel_args("grpc.x"),
        "with_channel_args: got 'grpc.x'; each argument is a (name, value) tuple",
    ),
    (
        lambda: _do.with_max_concurrency("4"),
        "with_max_concurrency: got '4'; pass an int (<= 0 for unlimited)",
    ),
    (
        lambda: _do.with_app_token("sec ret\n"),
        "with_app_token: got an invalid token (str); the token must be a non-empty string of "
        "printable ASCII, or None to read APP_API_TOKEN",
    ),
    (
        lambda: _do.with_tracing("on"),
        "with_tracing: got 'str'; pass an grpc_channel.interceptors.TracingSpec or None",
    ),
    (
        lambda: _do.fold_dial_options(_co.timeout(1)),
        "dial: got 'TimeoutCallOption'; pass DialOption objects (a call option? wrap it in "
        "with_default_call_options)",
    ),
]


@pytest.mark.parametrize(("make", "message"), _REFUSALS)
def test_refused_input_messages(make: Any, message: str) -> None:
    with pytest.raises(OptionError) as info:
        make()
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_token_never_in_error() -> None:
    with pytest.raises(OptionError) as info:
        do.with_app_token("s3cr3t\x00")
    assert "s3cr3t" not in str(info.value)


# ------------------------------------------------------------------------------------------
# Opening channels.


def test_open_channel_requires_transport_security() -> None:
    with pytest.raises(OptionError) as info:
        dl.open_channel("127.0.0.1:1", do.fold_dial_options())
    assert str(info.value) == (
        "dial: no transport security set; pass with_insecure() or with_transport_credentials(...)"
    )
    with pytest.raises(OptionError) as info:
        dl.open_channel("", do.fold_dial_options(do.with_insecure()))
    assert "the target must be a non-empty string" in str(info.value)


def test_open_channel_refuses_call_credentials_on_plaintext() -> None:
    creds = grpc.access_token_call_credentials("t")
    settings = do.fold_dial_options(do.with_insecure(), do.with_per_rpc_credentials(creds))
    with pytest.raises(OptionError) as info:
        dl.open_channel("127.0.0.1:1", settings)
    assert "grpc.CallCredentials are only sent over a secure channel" in str(info.value)

    class Secure:
        def get_request_metadata(self, method: str) -> dict[str, str]:
            return {"authorization": "x"}

        def require_transport_security(self) -> bool:
            return True

    settings = do.fold_dial_options(do.with_insecure(), do.with_per_rpc_credentials(Secure()))
    with pytest.raises(OptionError) as info:
        dl.open_channel("127.0.0.1:1", settings)
    assert str(info.value) == (
        "with_per_rpc_credentials: the credentials require transport security and the channel "
        "is insecure; pass with_transport_credentials(...)"
    )


def test_open_channel_applies_user_agent_and_compressor() -> None:
    pb2, pb2_grpc = echo_modules()
    with serve() as (port, servicer):
        settings = do.fold_dial_options(do.with_insecure(), do.with_user_agent("probe-agent/7"))
        channel = dl.open_channel(f"127.0.0.1:{port}", settings)
        try:
            reply = pb2_grpc.EchoStub(channel).Unary(pb2.EchoRequest(text="ua"))
        finally:
            channel.close()
        assert reply.text == "ua"
        assert servicer.seen[-1]["user-agent"].startswith("probe-agent/7 grpc-python/")

    # A server that only accepts identity proves the channel compressor is used.
    with serve(options=[("grpc.compression_enabled_algorithms_bitset", 1)]) as (port, _):
        settings = do.fold_dial_options(do.with_insecure(), do.with_compressor("gzip"))
        channel = dl.open_channel(f"127.0.0.1:{port}", settings)
        try:
            with pytest.raises(grpc.RpcError) as info:
                pb2_grpc.EchoStub(channel).Unary(pb2.EchoRequest(text="gz"))
        finally:
            channel.close()
        assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert "gzip" in (info.value.details() or "")


def test_open_channel_runs_interceptors_first_outermost() -> None:
    pb2, pb2_grpc = echo_modules()
    order: list[str] = []

    class Tag(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):  # type: ignore[type-arg]
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            order.append(self.tag)
            return continuation(details, request)

        def intercept_stream_stream(self, continuation: Any, details: Any, it: Any) -> Any:
            order.append("stream-" + self.tag)
            return continuation(details, it)

    with serve() as (port, _):
        settings = do.fold_dial_options(
            do.with_insecure(),
            do.with_chain_unary_interceptor(Tag("b"), Tag("c")),
            do.with_unary_interceptor(Tag("a")),
            do.with_stream_interceptor(Tag("s")),
        )
        channel = dl.open_channel(f"127.0.0.1:{port}", settings)
        try:
            stub = pb2_grpc.EchoStub(channel)
            stub.Unary(pb2.EchoRequest(text="x"))
            assert order == ["a", "b", "c"]  # unary interceptors never see streams and vice versa
            order.clear()
            list(stub.Bidi(iter([pb2.EchoRequest(text="y")])))
            assert order == ["stream-s"]
        finally:
            channel.close()


def test_open_channel_refuses_aio_interceptor_on_sync_channel() -> None:
    class AioU(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
        async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            return await continuation(details, request)

    settings = do.fold_dial_options(do.with_insecure(), do.with_unary_interceptor(AioU()))
    with pytest.raises(OptionError) as info:
        dl.open_channel("127.0.0.1:1", settings)
    assert "sync channels need grpc interceptors" in str(info.value)


def test_with_block_waits_and_times_out() -> None:
    with serve() as (port, _):
        settings = do.fold_dial_options(do.with_insecure(), do.with_block(10))
        channel = dl.open_channel(f"127.0.0.1:{port}", settings)
        channel.close()
    # Nothing listens on the (now free) port: the dial gives up with a typed error.
    settings = do.fold_dial_options(do.with_insecure(), do.with_block(0.2))
    with pytest.raises(dl.DialTimeoutError) as info:
        dl.open_channel(f"127.0.0.1:{port}", settings)
    assert str(info.value) == f"dial 127.0.0.1:{port}: channel not ready within 0.2 s"


def test_open_aio_channel_block_and_interceptors() -> None:
    pb2, pb2_grpc = echo_modules()
    seen: list[str] = []

    class AioBoth(
        grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
        grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
        grpc.aio.StreamStreamClientInterceptor,  # type: ignore[type-arg]
    ):
        async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            seen.append("unary")
            return await continuation(details, request)

        async def intercept_unary_stream(
            self, continuation: Any, details: Any, request: Any
        ) -> Any:
            seen.append("unary-stream")
            return await continuation(details, request)

        async def intercept_stream_stream(self, continuation: Any, details: Any, it: Any) -> Any:
            seen.append("stream-stream")
            return await continuation(details, it)

    both = AioBoth()

    async def main(port: int) -> None:
        settings = do.fold_dial_options(
            do.with_insecure(),
            do.with_block(10),
            do.with_stream_interceptor(both),
        )
        channel = await dl.open_aio_channel(f"127.0.0.1:{port}", settings)
        try:
            stub = pb2_grpc.EchoStub(channel)
            assert (await stub.Unary(pb2.EchoRequest(text="a"))).text == "a"
            replies = [r async for r in stub.ServerStream(pb2.EchoRequest(text="s", count=2))]
            assert len(replies) == 2
            replies = [r async for r in stub.Bidi(iter([pb2.EchoRequest(text="b")]))]
            assert [r.text for r in replies] == ["b"]
        finally:
            await channel.close(None)
        # Given as a stream interceptor only: the unary side is never used.
        assert seen == ["unary-stream", "stream-stream"]

    with serve() as (port, _):
        asyncio.run(main(port))

    async def unreachable() -> None:
        settings = do.fold_dial_options(do.with_insecure(), do.with_block(0.2))
        await dl.open_aio_channel(f"127.0.0.1:{port}", settings)

    with pytest.raises(dl.DialTimeoutError):
        asyncio.run(unreachable())


class _Creds:
    def get_request_metadata(self, method: str) -> dict[str, str]:
        return {"authorization": f"Bearer for {method}"}

    def require_transport_security(self) -> bool:
        return False


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "aio"])
def test_open_channel_applies_our_policies_and_default_call_options(aio: bool) -> None:
    """with_app_token, with_max_concurrency and grpc-go style dial credentials become one policy
    layer; with_default_call_options reach the engine through CallPlan.from_settings."""
    from grpc_channel._engine import AsyncEngine, CallPlan, SyncEngine

    pb2, _ = echo_modules()
    path = "/grpc_channel_test.Echo/Unary"
    settings = do.fold_dial_options(
        do.with_insecure(),
        do.with_app_token("tok-123"),
        do.with_max_concurrency(2),
        do.with_per_rpc_credentials(_Creds()),
        do.with_default_call_options(co.call_metadata("x-default", "yes"), co.timeout(30)),
    )

    async def main(port: int) -> None:
        target = f"127.0.0.1:{port}"
        plan = CallPlan.from_settings(settings, target)
        if aio:
            channel = await dl.open_aio_channel(target, settings)
            try:
                reply = await AsyncEngine(channel, plan).unary_unary(
                    path, pb2.EchoRequest(text="p"), pb2.EchoReply
                )
            finally:
                await channel.close(None)
        else:
            sync_channel = dl.open_channel(target, settings)
            try:
                reply = SyncEngine(sync_channel, plan).unary_unary(
                    path, pb2.EchoRequest(text="p"), pb2.EchoReply
                )
            finally:
                sync_channel.close()
        assert reply.text == "p"

    with serve() as (port, servicer):
        asyncio.run(main(port))
        seen = servicer.seen[-1]
    assert seen["dapr-api-token"] == "tok-123"
    assert seen["authorization"] == f"Bearer for {path}"
    assert seen["x-default"] == "yes"


def test_with_tracing_opens_client_spans() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from grpc_channel.interceptors._tracing import TracingSpec

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spec = TracingSpec(tracer_provider=provider, metrics=False)
    assert do.with_tracing(spec).spec is spec
    assert isinstance(do.with_tracing().spec, TracingSpec)

    pb2, pb2_grpc = echo_modules()
    settings = do.fold_dial_options(do.with_insecure(), do.with_tracing(spec))
    with serve() as (port, servicer):
        channel = dl.open_channel(f"127.0.0.1:{port}", settings)
        try:
            assert pb2_grpc.EchoStub(channel).Unary(pb2.EchoRequest(text="t")).text == "t"
        finally:
            channel.close()
        traceparent = servicer.seen[-1]["traceparent"]
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["grpc_channel_test.Echo/Unary"]
    assert f"{spans[0].context.trace_id:032x}" in traceparent


def test_dial_call_credentials_composed_on_a_secure_channel() -> None:
    pb2, pb2_grpc = echo_modules()
    local = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    settings = do.fold_dial_options(
        do.with_transport_credentials(local),
        do.with_per_rpc_credentials(grpc.access_token_call_credentials("dial-token")),
    )
    assert settings.secure
    with serve(local_tls=True) as (port, servicer):
        channel = dl.open_channel(f"127.0.0.1:{port}", settings)
        try:
            assert pb2_grpc.EchoStub(channel).Unary(pb2.EchoRequest(text="s")).text == "s"
        finally:
            channel.close()
        assert servicer.seen[-1]["authorization"] == "Bearer dial-token"


def test_settings_repr_hides_the_token() -> None:
    settings = do.fold_dial_options(do.with_app_token("very-secret-token"))
    assert settings.app_token == "very-secret-token"
    assert "very-secret-token" not in repr(settings)
    assert "very-secret-token" not in repr(do.with_app_token("very-secret-token"))
