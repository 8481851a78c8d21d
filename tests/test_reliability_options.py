"""Issue 16, items 7-9: values that passed validation and then broke inside grpcio, secrets in
reprs, logs and spans, and metadata keys grpc core drops or mangles.

The limits were measured with grpcio 1.85 on 127.0.0.1 (see the comments at each group); the tests
check both sides of every limit: refused with an ``OptionError`` (or the check's own error type)
that names the option, the value and the range, and the largest accepted value dials and calls.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import grpc
import pytest
from support_channel import OwnApp
from support_harness import Recorder, wait_until
from support_options import echo_modules, serve
from support_tracing import Telemetry

from grpc_channel import aio, wrap
from grpc_channel.call_options import (
    CallInfo,
    call_metadata,
    header,
    on_finish,
    per_rpc_credentials,
    timeout,
    trailer,
)
from grpc_channel.channel import Channel, dial
from grpc_channel.defaults import MAX_TIMEOUT, OptionError
from grpc_channel.dial_options import (
    fold_dial_options,
    with_app_token,
    with_authority,
    with_block,
    with_channel_args,
    with_connect_params,
    with_default_call_options,
    with_default_service_config,
    with_insecure,
    with_keepalive_params,
    with_max_concurrency,
    with_per_rpc_credentials,
    with_tracing,
    with_user_agent,
)
from grpc_channel.dialing import open_channel
from grpc_channel.interceptors import AppToken, Deadline, TokenAuth, compose
from grpc_channel.interceptors._tracing import TracingSpec
from grpc_channel.invoke import InvokeMethodRequest, InvokeMethodResponse
from grpc_channel.metadata import (
    REDACTED,
    Metadata,
    MetadataError,
    internal_to_grpc,
    redacted_pairs,
)

pytestmark = pytest.mark.timeout(60)

AIO = pytest.mark.parametrize("aio_", [False, True], ids=["sync", "aio"])
OK = 0
SECRET = "s3cr3t-T0KEN-value"
# Largest whole-millisecond value grpc core takes as a C int: 2**31-1 ms.
MAX_MS_SECONDS = (2**31 - 1) / 1000


def _echo(channel: Channel, *call_options: Any) -> InvokeMethodResponse:
    return channel.invoke_method(InvokeMethodRequest("echo").with_data(b"hi"), *call_options)


def _dial_and_call(target: str, *options: Any, aio_: bool = False) -> int:
    """Dial with ``options`` and make one invoke; the response's status code."""
    if not aio_:
        with dial(target, with_insecure(), *options) as channel:
            return _echo(channel, timeout(10)).status.code

    async def main() -> int:
        async with aio.dial(target, with_insecure(), *options) as channel:
            request = InvokeMethodRequest("echo").with_data(b"hi")
            return (await channel.invoke_method(request, timeout(10))).status.code

    return asyncio.run(main())


def _refused(make: Any, *parts: str) -> str:
    """``make()`` raises OptionError whose message contains every one of ``parts``."""
    with pytest.raises(OptionError) as info:
        make()
    message = str(info.value)
    for part in parts:
        assert part in message, (part, message)
    return message


# --- 7. millisecond options: grpc core takes them as a C int --------------------------------------
# Measured: int(seconds * 1000) of 2**31 or more makes grpc.insecure_channel raise OverflowError
# ("value too large to convert to int"); 2**31-1 ms dials.


@pytest.mark.parametrize(
    "make",
    [
        lambda: with_keepalive_params(2**31 / 1000),
        lambda: with_keepalive_params(10, 2**31 / 1000),
        lambda: with_keepalive_params(1e12),
        lambda: with_connect_params(base_delay=2**31 / 1000, max_delay=2**31 / 1000),
        lambda: with_connect_params(max_delay=2**31 / 1000),
        lambda: with_connect_params(min_connect_timeout=1e9),
    ],
    ids=["keepalive-time", "keepalive-timeout", "keepalive-huge", "base", "max", "connect"],
)
def test_millisecond_options_beyond_a_c_int_are_refused(make: Any) -> None:
    _refused(make, "got ", "at most 2147483.647 s", "C int of milliseconds")


def test_millisecond_option_messages_name_option_and_value() -> None:
    _refused(lambda: with_keepalive_params(3e6), "with_keepalive_params: got 3000000.0;", "time ")
    _refused(
        lambda: with_connect_params(max_delay=3e6),
        "with_connect_params: got 3000000.0;",
        "max_delay must be at most",
    )


@AIO
def test_millisecond_options_at_the_limit_dial_and_call(own_app: OwnApp, aio_: bool) -> None:
    options = (
        with_keepalive_params(MAX_MS_SECONDS, MAX_MS_SECONDS),
        with_connect_params(
            base_delay=MAX_MS_SECONDS, max_delay=MAX_MS_SECONDS, min_connect_timeout=MAX_MS_SECONDS
        ),
    )
    assert _dial_and_call(own_app.target, *options, aio_=aio_) == OK


# --- 7. raw channel arguments ---------------------------------------------------------------------
# Measured: ints outside [-2**31, 2**31-1] raise OverflowError at dial; a lone surrogate in a key
# or value raises UnicodeEncodeError at dial; a NUL cuts the C string silently (a key
# "grpc.primary_user_agent\0x" set the primary user agent behind with_user_agent's back).


@pytest.mark.parametrize(
    "value", [2**31, -(2**31) - 1, 2**63, 10**400], ids=["2**31", "-2**31-1", "2**63", "10**400"]
)
def test_channel_arg_ints_outside_a_c_int_are_refused(value: int) -> None:
    message = _refused(
        lambda: with_channel_args(("grpc.x", value)),
        "with_channel_args: got ('grpc.x', ",
        "-2147483648 to 2147483647",
    )
    assert len(message) < 300  # a huge value is cut, not printed (or refused by repr) in full


@pytest.mark.parametrize(
    ("arg", "part"),
    [
        (("grpc.x", "\ud800"), "lone surrogate"),
        (("grpc.\udfff", "v"), "lone surrogate"),
        (("grpc.x", "a\0b"), "must not contain NUL"),
        (("grpc.primary_user_agent\0x", "v"), "must not contain NUL"),
    ],
    ids=["value-surrogate", "key-surrogate", "value-nul", "key-nul"],
)
def test_channel_arg_text_grpc_cannot_take_is_refused(arg: tuple[str, str], part: str) -> None:
    _refused(lambda: with_channel_args(arg), "with_channel_args: got ", part)


@AIO
def test_channel_args_at_the_limits_dial_and_call(own_app: OwnApp, aio_: bool) -> None:
    option = with_channel_args(
        ("grpc.test_max", 2**31 - 1), ("grpc.test_min", -(2**31)), ("grpc.test_text", "caf\u00e9")
    )
    assert _dial_and_call(own_app.target, option, aio_=aio_) == OK


# --- 7. text that grpcio encodes as UTF-8 ---------------------------------------------------------
# Measured: a lone surrogate in the target or a method path raised UnicodeEncodeError from grpcio;
# a NUL in the target was cut silently (the rest ignored).


@pytest.mark.parametrize("target", ["127.0.0.1:\ud800", "\udc80", "127.0.0.1:1\0junk"])
def test_targets_grpc_cannot_take_are_refused_at_dial(target: str) -> None:
    _refused(lambda: open_channel(target, fold_dial_options(with_insecure())), "dial: got ")
    _refused(lambda: dial(target, with_insecure()), "dial: got ", "the target must")

    async def main() -> None:
        await aio.dial(target, with_insecure())

    _refused(lambda: asyncio.run(main()), "dial: got ", "the target must")


@pytest.mark.parametrize(
    "make",
    [lambda: with_authority("\ud800"), lambda: with_user_agent("ok\udfffok")],
    ids=["authority", "user-agent"],
)
def test_authority_and_user_agent_refuse_surrogates(make: Any) -> None:
    _refused(make, "got ", "printable ASCII")


@AIO
def test_invoke_method_path_with_a_surrogate_is_refused(own_app: OwnApp, aio_: bool) -> None:
    path = "/pkg.Service/Meth\ud800od"
    if not aio_:
        with (
            dial(own_app.target, with_insecure()) as channel,
            pytest.raises(ValueError, match="lone surrogate") as info,
        ):
            channel.invoke(path, b"")
    else:

        async def main() -> None:
            async with aio.dial(own_app.target, with_insecure()) as channel:
                await channel.invoke(path, b"")

        with pytest.raises(ValueError, match="lone surrogate") as info:
            asyncio.run(main())
    assert "method must be valid Unicode" in str(info.value)


def test_invoke_method_path_that_is_valid_unicode_still_reaches_the_server(
    own_app: OwnApp,
) -> None:
    with (
        dial(own_app.target, with_insecure()) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        channel.invoke("/pkg.S\u00e9rvice/M", b"", timeout(10))
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]


@pytest.mark.parametrize("config", ['{"x": "\ud800"}', {"x": "\ud800"}], ids=["text", "mapping"])
def test_service_config_with_a_lone_surrogate_is_refused(config: Any) -> None:
    # Raw, grpcio raised UnicodeEncodeError at dial; escaped (as json.dumps writes it), grpc core's
    # JSON parser failed every call with "Failed to create channel".
    _refused(lambda: with_default_service_config(config), "with_default_service_config: got ")


# --- 7. timeouts ----------------------------------------------------------------------------------
# Measured with grpcio 1.85 on 2026-era clocks: a call deadline is int64 ns since 1970, so a timeout
# of about 7.43e9 s or more (2**63 ns minus now) failed every call at once with DEADLINE_EXCEEDED
# (sync and aio); with_block from about 9.2e9 s (threading.TIMEOUT_MAX) raised OverflowError, and
# wait_until_ready spun until its (never reached) deadline. MAX_TIMEOUT is 1e9 s.


def test_max_timeout_is_one_billion_seconds() -> None:
    assert MAX_TIMEOUT == 1e9


@pytest.mark.parametrize(
    "value",
    [1e9 + 1, 7.5e9, 1e10, 1e300, 10**400],
    ids=["1e9+1", "7.5e9", "1e10", "1e300", "10**400"],
)
@pytest.mark.parametrize(
    ("name", "make"),
    [("timeout", timeout), ("with_block", with_block)],
    ids=["timeout", "with_block"],
)
def test_timeouts_beyond_the_limit_are_refused(name: str, make: Any, value: float) -> None:
    message = _refused(
        lambda: make(value), f"{name}: got ", "at most 1e+09 (about 31.7 years", "no timeout"
    )
    assert len(message) < 400


def test_timeout_messages_keep_their_old_form_below_the_range() -> None:
    with pytest.raises(OptionError) as info:
        timeout(math.inf)
    assert str(info.value) == "timeout: got inf; seconds must be a finite number > 0"


@AIO
def test_timeouts_at_the_limit_call_successfully(own_app: OwnApp, aio_: bool) -> None:
    options = (with_block(MAX_TIMEOUT), with_default_call_options(timeout(MAX_TIMEOUT)))
    assert _dial_and_call(own_app.target, *options, aio_=aio_) == OK
    with dial(own_app.target, with_insecure()) as channel:
        assert _echo(channel, timeout(MAX_TIMEOUT)).status.code == OK
        assert channel.health_probe(MAX_TIMEOUT) is True
        channel.wait_until_ready(MAX_TIMEOUT)


@AIO
def test_app_channel_waits_refuse_timeouts_beyond_the_limit(own_app: OwnApp, aio_: bool) -> None:
    # The channel is closed first so that, without the check, wait_until_ready returns at once
    # (AppNotReadyError, a TimeoutError) instead of spinning.
    pattern = r"timeout: got 10000000000.0; .*at most 1e\+09"
    if not aio_:
        channel = dial(own_app.target, with_insecure())
        with pytest.raises(ValueError, match=pattern):
            channel.health_probe(1e10)
        channel.close()
        with pytest.raises(ValueError, match=pattern):
            channel.wait_until_ready(1e10)
        return

    async def main() -> None:
        channel = await aio.dial(own_app.target, with_insecure())
        with pytest.raises(ValueError, match=pattern):
            await channel.health_probe(1e10)
        await channel.close()
        with pytest.raises(ValueError, match=pattern):
            await channel.wait_until_ready(1e10)

    asyncio.run(main())


@pytest.mark.parametrize("value", [1e10, 10**400], ids=["1e10", "10**400"])
def test_deadline_policy_refuses_timeouts_beyond_the_limit(value: float) -> None:
    with pytest.raises(ValueError, match=r"Deadline default: got .*at most 1e\+09"):
        Deadline(value)
    with pytest.raises(ValueError, match=r"Deadline maximum: got .*at most 1e\+09"):
        Deadline(maximum=value)
    assert Deadline(MAX_TIMEOUT, maximum=MAX_TIMEOUT).maximum == MAX_TIMEOUT


def test_deadline_policy_at_the_limit_calls_successfully(own_app: OwnApp) -> None:
    from grpc_channel.appcallback import ON_INVOKE
    from grpc_channel.v1 import common_pb2

    request = common_pb2.InvokeRequest(method="echo").SerializeToString()
    with grpc.insecure_channel(own_app.target) as raw:
        channel = compose(Deadline(MAX_TIMEOUT)).wrap(raw)
        reply = channel.unary_unary(ON_INVOKE)(request)
    assert isinstance(reply, bytes)


def test_huge_concurrency_limit_is_refused_not_overflowed() -> None:
    # Measured: with_max_concurrency(10**400) was accepted, then dial raised OverflowError.
    _refused(lambda: with_max_concurrency(10**400), "with_max_concurrency: got ", "at most")
    assert with_max_concurrency(2**63 - 1).max_concurrency == 2**63 - 1


# --- 8. secrets in reprs, logs and spans ----------------------------------------------------------


class _GoCreds:
    """grpc-go style per-RPC credentials whose own repr shows the secret."""

    def get_request_metadata(self, method: str) -> dict[str, str]:
        return {"authorization": f"Bearer {SECRET}"}

    def require_transport_security(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"_GoCreds(token={SECRET!r})"


def _secret_holders() -> list[object]:
    md_option = call_metadata(
        "authorization", f"Bearer {SECRET}", "dapr-api-token", SECRET, "x-api-key", SECRET
    )
    defaults = with_default_call_options(md_option, per_rpc_credentials(_GoCreds()))
    settings = fold_dial_options(
        with_insecure(),
        defaults,
        with_app_token(SECRET),
        with_per_rpc_credentials(_GoCreds()),
    )
    received = Metadata.from_grpc((("authorization", SECRET), ("x-app-token", SECRET)))
    info = CallInfo("/a.B/C")
    info.metadata = md_option.pairs
    request = InvokeMethodRequest("m").with_metadata({"authorization": [SECRET]})
    return [
        md_option,
        defaults,
        settings,
        per_rpc_credentials(_GoCreds()),
        with_per_rpc_credentials(_GoCreds()),
        header(received),
        trailer(received),
        received,
        with_app_token(SECRET),
        AppToken(SECRET),
        AppToken(SECRET, header="x-app-token"),
        TokenAuth(SECRET),
        compose(AppToken(SECRET), TokenAuth(SECRET)),
        info,
        request,
    ]


def test_no_repr_or_str_of_an_option_or_settings_object_shows_a_secret() -> None:
    for holder in _secret_holders():
        for text in (repr(holder), str(holder)):
            assert SECRET not in text, text


def test_metadata_option_repr_redacts_with_the_metadata_rule() -> None:
    option = call_metadata("authorization", "Bearer x", "x-user", "ann")
    assert repr(option) == (
        "MetadataCallOption(pairs=(('authorization', '<redacted>'), ('x-user', 'ann')))"
    )
    settings = fold_dial_options(with_insecure(), with_default_call_options(option))
    assert "('authorization', '<redacted>')" in repr(settings)
    assert "('x-user', 'ann')" in repr(settings)
    assert redacted_pairs((("dapr-api-token", "t"), ("x-b-bin", b"\x00"))) == (
        ("dapr-api-token", REDACTED),
        ("x-b-bin", b"\x00"),
    )


def test_per_rpc_credentials_are_shown_by_type() -> None:
    settings = fold_dial_options(with_insecure(), with_per_rpc_credentials(_GoCreds()))
    assert "per_rpc_credentials=(<_GoCreds>,)" in repr(settings)
    assert repr(per_rpc_credentials(_GoCreds())) == "PerRPCCredsCallOption(creds=<_GoCreds>)"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))


def test_secrets_are_not_logged_at_debug(own_app: OwnApp) -> None:
    handler = _Records()
    loggers = [
        logging.getLogger(name) for name in ("grpc_channel", "grpc_channel.interceptors", "")
    ]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)

    def failing_hook(error: BaseException | None) -> None:
        raise RuntimeError("hook failed")

    options = (
        with_app_token(SECRET),
        with_per_rpc_credentials(_GoCreds()),
        with_default_call_options(call_metadata("authorization", SECRET)),
        with_max_concurrency(4),
    )
    try:
        with dial(own_app.target, with_insecure(), *options) as channel:
            channel.wait_until_ready(10)
            assert _echo(channel, timeout(10)).status.code == OK
            assert channel.invoke_method(InvokeMethodRequest("nope"), timeout(10)).status.code
            with pytest.raises(RuntimeError):
                _echo(channel, timeout(10), on_finish(failing_hook))
            with pytest.raises(grpc.RpcError):
                channel.invoke("/x.Y/Z", b"", timeout(10), on_finish(failing_hook))

        async def main() -> None:
            async with aio.dial(own_app.target, with_insecure(), *options) as channel:
                request = InvokeMethodRequest("echo").with_data(b"hi")
                await channel.invoke_method(request, timeout(10))

        asyncio.run(main())
        # A stream dropped early: the engine logs its failed hook (no caller is left), with the
        # call's metadata (a token among it) in hand.
        pb2, pb2_grpc = echo_modules()
        with serve() as (port, _), grpc.insecure_channel(f"127.0.0.1:{port}") as raw:
            stub = wrap(pb2_grpc.EchoStub(raw), call_metadata("dapr-api-token", SECRET))
            stream = stub.ServerStream(
                pb2.EchoRequest(text="x", count=3), on_finish(failing_hook), timeout(10)
            )
            next(stream)
            stream.cancel()
            wait_until(lambda: any("hook failed" in t for t in handler.texts), 5)
    finally:
        for lg, level in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
    assert any("hook failed" in text for text in handler.texts)  # the capture works
    assert not [text for text in handler.texts if SECRET in text]


@pytest.mark.parametrize("lean", [False, True], ids=["sdk", "lean"])
def test_secrets_are_not_put_in_spans(own_app: OwnApp, lean: bool) -> None:
    telemetry = Telemetry(lean=lean)
    spec = TracingSpec(**telemetry.span_source(), meter_provider=telemetry.meter_provider)
    options = (
        with_tracing(spec),
        with_app_token(SECRET),
        with_default_call_options(call_metadata("authorization", SECRET)),
    )
    try:
        with dial(own_app.target, with_insecure(), *options) as channel:
            assert _echo(channel, timeout(10)).status.code == OK
            assert channel.invoke_method(InvokeMethodRequest("fail"), timeout(10)).status.code
        spans = telemetry.spans()
        assert spans
        for span in spans:
            shown = [span.name, repr(dict(span.attributes or {}))]
            shown += [repr(dict(event.attributes or {})) + event.name for event in span.events]
            shown.append(span.status.description or "")
            assert not [text for text in shown if SECRET in text], shown
    finally:
        telemetry.shutdown()


# --- 9. metadata keys grpc core drops or mangles --------------------------------------------------
# Measured by sending each key (one and two values) raw to a grpcio 1.85 server on 127.0.0.1 and
# by reading the HTTP/2 HEADERS frame grpcio's client writes:
# - lb-cost-bin, endpoint-load-metrics-bin, grpc-server-stats-bin, x-envoy-peer-metadata: never
#   reach the server's application (grpc core metadata traits with kPublishToApp false); lb-cost-bin
#   is re-encoded (b"v1" went out as 8 zero bytes);
# - grpclb_client_stats: never sent at all;
# - grpc-retry-pushback-ms: parsed as int64 and re-encoded; "abc", "1.5", "" and
#   "99999999999999999999" arrive as "-9223372036854775808", " 12" and "+7" as "12" and "7".

CONSUMED = [
    "lb-cost-bin",
    "endpoint-load-metrics-bin",
    "grpc-server-stats-bin",
    "x-envoy-peer-metadata",
    "grpclb_client_stats",
]


def _value(key: str) -> str | bytes:
    return b"v" if key.endswith("-bin") else "v"


@pytest.mark.parametrize("key", CONSUMED)
def test_keys_grpc_core_consumes_are_refused_on_every_insertion(key: str) -> None:
    value = _value(key)
    writers = [
        lambda: Metadata({key: value}),
        lambda: Metadata([(key, value)]),
        lambda: Metadata.pairs(key, value),
        lambda: Metadata().set(key, value),
        lambda: Metadata().append(key.upper(), value),
    ]
    for write in writers:
        with pytest.raises(MetadataError, match="grpc core consumes it") as info:
            write()
        assert repr(key) in str(info.value)
    with pytest.raises(OptionError, match=f"call_metadata: .*{key}.*grpc core consumes it"):
        call_metadata(key, value)
    # Dapr's conversion drops reserved keys, as it always has (HTTP callers send them routinely).
    assert internal_to_grpc({key: ["dg=="], "x-ok": ["1"]}) == {"x-ok": ["1"]}


def test_why_consumed_keys_are_refused(
    recording_server: tuple[str, Recorder],
) -> None:
    target, rec = recording_server
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/t.Rec/Call")
        for key in CONSUMED:
            rec.seen.clear()
            call(b"", metadata=((key, _value(key)), ("x-probe", "1")), timeout=10)
            keys = [k for k, _ in rec.seen[0].pairs]
            assert "x-probe" in keys and key not in keys, key


@pytest.mark.parametrize(
    "value",
    [
        *("abc", "", "-0", "--5", "1.5", " 12", "+7", "007", "-07", "12 "),
        *("99999999999999999999", str(2**63), str(-(2**63) - 1)),
    ],
)
def test_pushback_values_grpc_core_rewrites_are_refused(value: str) -> None:
    pattern = r"'grpc-retry-pushback-ms'.*an integer of milliseconds in int64 range"
    with pytest.raises(MetadataError, match=pattern):
        Metadata.pairs("grpc-retry-pushback-ms", value)
    with pytest.raises(MetadataError, match=pattern):
        Metadata({"grpc-retry-pushback-ms": value.encode()})
    with pytest.raises(OptionError, match=pattern):
        call_metadata("grpc-retry-pushback-ms", value)
    with pytest.raises(MetadataError, match=pattern):
        internal_to_grpc({"grpc-retry-pushback-ms": [value]})
    assert internal_to_grpc({"grpc-retry-pushback-ms": [value]}, on_invalid="drop") == {}


def test_pushback_values_that_are_accepted_arrive_unchanged(
    recording_server: tuple[str, Recorder],
) -> None:
    target, rec = recording_server
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/t.Rec/Call")
        for value in ["0", "12", "-1", str(2**63 - 1), str(-(2**63))]:
            md = Metadata.pairs("grpc-retry-pushback-ms", value)
            rec.seen.clear()
            call(b"", metadata=md.to_grpc(), timeout=10)
            assert ("grpc-retry-pushback-ms", value) in rec.seen[0].pairs


def test_received_metadata_stays_tolerant(
    recording_server: tuple[str, Recorder],
) -> None:
    # Odd received values (a pushback grpc core would rewrite, consumed keys) are read without
    # error and kept, but never sent on. grpc core's own marker for an unparseable pushback,
    # int64's minimum, is a valid negative value ("do not retry") and travels on.
    target, _ = recording_server
    with grpc.insecure_channel(target) as channel:
        # Only the trailer "grpc-retry-pushback-ms: abc" (grpc core rewrites it).
        _, call = channel.unary_unary("/t.Rec/Call").with_call(b"trailer=;pushback=abc", timeout=10)
    received = Metadata.from_grpc(call.trailing_metadata())
    assert received.get("grpc-retry-pushback-ms") == ["-9223372036854775808"]
    odd = Metadata.from_grpc(
        (
            ("grpc-retry-pushback-ms", "-0"),
            ("lb-cost-bin", b"\x00"),
            ("x-envoy-peer-metadata", "p"),
            ("x-ok", "1"),
        )
    )
    assert list(odd.keys()) == [
        "grpc-retry-pushback-ms",
        "lb-cost-bin",
        "x-envoy-peer-metadata",
        "x-ok",
    ]
    assert odd.to_grpc() == (("x-ok", "1"),)
    holder = Metadata()
    trailer(holder).after(_info_with_trailers(call.trailing_metadata()))
    assert holder.get("grpc-retry-pushback-ms") == ["-9223372036854775808"]
    assert dict(Metadata.join(odd, received).to_grpc()) == {
        "x-ok": "1",
        "grpc-retry-pushback-ms": "-9223372036854775808",
    }


def _info_with_trailers(trailers: Any) -> CallInfo:
    info = CallInfo("/t.Rec/Call")
    info.trailers = tuple(trailers)
    return info
