"""Property-based fuzzing of every input boundary (issue 16): ``Metadata`` keys and values,
``InvokeMethodRequest`` construction, every option constructor and the app channel's own inputs.

Arbitrary input (huge ints, inf/nan, lone surrogates, NUL, wrong types) may only raise the typed
error each boundary documents: ``OptionError`` for options, ``MetadataError`` for metadata,
``InvokeError`` for requests, ``ValueError``/``TypeError`` for the channel's method arguments and
the ``Deadline`` policy. Never OverflowError, UnicodeEncodeError, AttributeError and the like. What
is accepted must then work: bounded samples dial and call a real server on 127.0.0.1.

Example counts are kept low (the file runs in a few seconds on two cores); ``deadline=None``
because the calls' latency varies on a shared machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from support_channel import OwnApp
from support_harness import Recorder

from grpc_channel import aio
from grpc_channel import call_options as co
from grpc_channel import defaults as df
from grpc_channel import dial_options as do
from grpc_channel import dialing as dl
from grpc_channel._channel_core import with_raise_errors
from grpc_channel.channel import Channel, dial
from grpc_channel.defaults import OptionError
from grpc_channel.interceptors import Deadline
from grpc_channel.invoke import InvokeError, InvokeMethodRequest
from grpc_channel.metadata import Metadata, MetadataError, internal_to_grpc

pytestmark = pytest.mark.timeout(120)

# Construction only: cheap, so more examples. Calls: a bounded sample.
_QUIET = [HealthCheck.too_slow, HealthCheck.filter_too_much]
BUILD = settings(max_examples=150, deadline=None, suppress_health_check=_QUIET)
CALL = settings(max_examples=25, deadline=None, suppress_health_check=_QUIET)

# --- arbitrary input ------------------------------------------------------------------------------

# Every code point, lone surrogates included (st.characters() leaves those out by default).
any_char = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.just("\0"))
any_text = st.text(any_char, max_size=16)
edge_ints = st.sampled_from(
    [0, 1, -1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, 10**400, -(10**400)]
)
any_int = st.one_of(st.integers(), edge_ints)
edge_floats = st.sampled_from(
    [1e-9, 0.1, 10.0, 2147483.647, 2147483.648, 1e9, 1e9 + 1, 7.5e9, 9.3e9, 1e300, -0.0]
)
any_float = st.one_of(st.floats(allow_nan=True, allow_infinity=True), edge_floats)
junk = st.one_of(
    st.none(),
    st.booleans(),
    any_int,
    any_float,
    any_text,
    st.binary(max_size=8),
    st.builds(object),
    st.lists(st.one_of(any_int, any_text), max_size=3),
    st.tuples(any_text, st.one_of(any_int, any_text)),
    st.dictionaries(any_text, any_text, max_size=2),
)

# Every option constructor, called with what hypothesis draws: (name, function, argument tuples).
ONE_ARG: list[Callable[[Any], object]] = [
    co.timeout,
    co.wait_for_ready,
    co.header,
    co.trailer,
    co.peer,
    co.on_finish,
    co.call_metadata,
    co.use_compressor,
    co.per_rpc_credentials,
    co.call_content_subtype,
    co.force_codec,
    co.max_call_recv_msg_size,
    co.max_call_send_msg_size,
    do.with_transport_credentials,
    do.with_per_rpc_credentials,
    do.with_authority,
    do.with_user_agent,
    do.with_keepalive_params,
    do.with_max_recv_msg_size,
    do.with_max_send_msg_size,
    do.with_default_service_config,
    do.with_compressor,
    do.with_codec,
    do.with_unary_interceptor,
    do.with_stream_interceptor,
    do.with_block,
    do.with_max_concurrency,
    do.with_app_token,
    do.with_tracing,
    with_raise_errors,
]
VARIADIC: list[Callable[..., object]] = [
    co.call_metadata,
    do.with_channel_args,
    do.with_default_call_options,
    do.with_chain_unary_interceptor,
    do.with_chain_stream_interceptor,
]
CONNECT_KEYWORDS = ["base_delay", "multiplier", "jitter", "max_delay", "min_connect_timeout"]
# Timeouts long enough for a call, up to and past the limits (and some that are not numbers).
long_timeouts = st.sampled_from(
    [5, 1e9, 1e9 + 1, 7.5e9, 9.3e9, 1e300, math.inf, math.nan, 10**400, True, "5"]
)


@pytest.fixture(scope="module")
def channel(own_app: OwnApp) -> Iterator[Channel]:
    with dial(own_app.target, do.with_insecure(), do.with_app_token("fuzz-token")) as ch:
        ch.wait_until_ready(10)
        yield ch


def _only(errors: tuple[type[BaseException], ...], call: Callable[[], object]) -> object | None:
    """``call()``'s result, or None when it raised one of ``errors``; anything else fails."""
    try:
        return call()
    except errors:
        return None


def _use(own_app: OwnApp, channel: Channel, option: object) -> None:
    """Put an accepted option to work: a dial option opens a channel to the live app (grpcio
    reads the channel arguments, our policies are built, with_block waits for readiness); a call
    option goes on one call. Neither may raise (a call's failure comes back as a response)."""
    if option is None:
        return
    if isinstance(option, co.CallOption):
        channel.invoke_method(InvokeMethodRequest("echo").with_data(b"hi"), option)
        return
    try:
        dial(own_app.target, do.with_insecure(), option).close()  # type: ignore[arg-type]
    except dl.DialTimeoutError:
        # Documented for with_block: a wait shorter than a connection takes may run out.
        assert isinstance(option, do.BlockDialOption) and option.timeout < 5


@BUILD
@given(st.sampled_from(ONE_ARG), junk)
def test_one_argument_options_raise_only_option_error(
    own_app: OwnApp, channel: Channel, make: Any, value: Any
) -> None:
    _use(own_app, channel, _only((OptionError,), lambda: make(value)))


@BUILD
@given(st.sampled_from(VARIADIC), st.lists(junk, max_size=4))
def test_variadic_options_raise_only_option_error(
    own_app: OwnApp, channel: Channel, make: Any, values: list[Any]
) -> None:
    _use(own_app, channel, _only((OptionError,), lambda: make(*values)))


@BUILD
@given(junk, junk, junk)
def test_keepalive_raises_only_option_error(
    own_app: OwnApp, channel: Channel, time: Any, timeout: Any, permit: Any
) -> None:
    option = _only(
        (OptionError,),
        lambda: do.with_keepalive_params(time, timeout, permit_without_stream=permit),
    )
    _use(own_app, channel, option)


@BUILD
@given(st.dictionaries(st.sampled_from(CONNECT_KEYWORDS), junk, max_size=3))
def test_connect_params_raise_only_option_error(
    own_app: OwnApp, channel: Channel, keywords: dict[str, Any]
) -> None:
    _use(own_app, channel, _only((OptionError,), lambda: do.with_connect_params(**keywords)))


@BUILD
@given(st.lists(st.one_of(junk, st.tuples(st.sampled_from(["grpc.x", "grpc.\ud800"]), junk))))
def test_channel_args_raise_only_option_error(
    own_app: OwnApp, channel: Channel, args: list[Any]
) -> None:
    _use(own_app, channel, _only((OptionError,), lambda: do.with_channel_args(*args)))


@CALL
@given(st.one_of(st.floats(min_value=1, max_value=1e13), long_timeouts))
def test_accepted_timeouts_let_the_call_run(channel: Channel, seconds: Any) -> None:
    # A timeout that is accepted gives the call its time: no DEADLINE_EXCEEDED at once.
    option = _only((OptionError,), lambda: co.timeout(seconds))
    if option is not None:
        response = channel.invoke_method(InvokeMethodRequest("echo"), option)  # type: ignore[arg-type]
        assert response.status.code == 0, seconds


@BUILD
@given(junk, junk)
def test_deadline_policy_raises_only_value_or_type_error(default: Any, maximum: Any) -> None:
    # Documented: TypeError for a non-number, ValueError for a number out of range.
    _only((ValueError, TypeError), lambda: Deadline(default, maximum=maximum))


# --- metadata -------------------------------------------------------------------------------------

SPECIAL_KEYS = [
    "grpc-retry-pushback-ms",
    "lb-cost-bin",
    "endpoint-load-metrics-bin",
    "grpc-server-stats-bin",
    "x-envoy-peer-metadata",
    "grpclb_client_stats",
    "grpc-timeout",
    "user-agent",
    ":path",
    "authorization",
    "dapr-api-token",
    "x-data-bin",
    "X-Upper",
]
meta_keys = st.one_of(st.sampled_from(SPECIAL_KEYS), any_text, junk)
pushback_like = st.one_of(
    st.integers(min_value=-5, max_value=2**64).map(str),
    st.text("0123456789+- .", max_size=22),
)
meta_values = st.one_of(any_text, st.binary(max_size=8), pushback_like, junk)


@BUILD
@given(meta_keys, meta_values, st.sampled_from(["pairs", "map", "list", "set", "append"]))
def test_metadata_writers_raise_only_metadata_error(key: Any, value: Any, how: str) -> None:
    writers: dict[str, Callable[[], object]] = {
        "pairs": lambda: Metadata.pairs(key, value),
        "map": lambda: Metadata({key: value} if isinstance(key, Hashable) else [(key, value)]),
        "list": lambda: Metadata([(key, value)]),
        "set": lambda: Metadata().set(key, value),
        "append": lambda: Metadata().append(key, value),
    }
    md = _only((MetadataError,), writers[how])
    if isinstance(md, Metadata):
        md.to_grpc()
        repr(md)
    _only((OptionError,), lambda: co.call_metadata(key, value))


hashable_keys = st.one_of(st.sampled_from(SPECIAL_KEYS), any_text, any_int, st.none())


@BUILD
@given(
    st.dictionaries(hashable_keys, st.one_of(st.lists(meta_values, max_size=2), junk), max_size=3)
)
def test_dapr_conversion_raises_only_metadata_error(internal: dict[Any, Any]) -> None:
    _only((MetadataError,), lambda: internal_to_grpc(internal))
    internal_to_grpc(internal, on_invalid="drop")  # "drop" never raises for a mapping


@BUILD
@given(
    st.lists(
        st.tuples(
            st.one_of(st.sampled_from(SPECIAL_KEYS), st.text("abcxyz-_.0129", min_size=1)),
            st.one_of(any_text, st.binary(max_size=8), pushback_like),
        ),
        max_size=4,
    )
)
def test_received_metadata_is_read_whatever_it_holds(pairs: list[tuple[str, Any]]) -> None:
    # What grpc core hands over: valid keys, str or bytes values. Never raises; to_grpc sends on
    # only what may be sent.
    md = Metadata.from_grpc(pairs)
    sendable = md.to_grpc()
    assert Metadata(sendable).to_grpc() == sendable


# Keys sent with one value each (grpc core keeps only the last value of host, traceparent ...;
# documented in grpc_channel.metadata). grpc-trace-bin and grpc-tags-bin are allowed for grpc-go
# and grpc-java peers but a grpcio server consumes them, so they are left out here.
sent_keys = st.one_of(
    st.sampled_from([*SPECIAL_KEYS, "host", "traceparent", "lb-token", "x-forwarded-for"]),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12),
)
sent_values = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
    st.binary(max_size=20),
    pushback_like,
    any_text,
)


@CALL
@given(st.dictionaries(sent_keys, sent_values, max_size=4))
def test_accepted_metadata_reaches_a_grpcio_server_unchanged(
    recording_server: tuple[str, Recorder], entries: dict[str, Any]
) -> None:
    md = _only((MetadataError,), lambda: Metadata(entries))
    assume(isinstance(md, Metadata) and len(md) == len(entries))  # no two keys differing by case
    assert isinstance(md, Metadata)
    target, rec = recording_server
    rec.seen.clear()
    with grpc.insecure_channel(target) as channel:
        channel.unary_unary("/t.Rec/Call")(b"", metadata=md.to_grpc(), timeout=10)
    received = Metadata.from_grpc(rec.seen[0].pairs)
    for key in md:
        assert received.get(key) == md.get(key), key


# --- requests and the app channel -----------------------------------------------------------------

request_text = st.one_of(any_text, junk)


@st.composite
def requests(draw: st.DrawFn) -> InvokeMethodRequest:
    """A request built from arbitrary input; InvokeError is the only refusal."""
    req = InvokeMethodRequest(draw(st.one_of(st.just("echo"), request_text)))
    steps: list[Callable[[InvokeMethodRequest], object]] = [
        lambda r: r.with_data(draw(st.one_of(st.binary(max_size=16), junk)), draw(request_text)),
        lambda r: r.with_content_type(draw(request_text)),
        lambda r: r.with_http_extension(draw(st.one_of(any_int, request_text)), draw(request_text)),
        lambda r: r.with_api_version(draw(st.one_of(any_int, junk))),
        lambda r: r.with_metadata(
            draw(
                st.one_of(
                    junk,
                    st.dictionaries(
                        st.one_of(st.sampled_from(SPECIAL_KEYS), any_text),
                        st.one_of(any_text, st.lists(any_text, max_size=2), pushback_like),
                        max_size=3,
                    ),
                )
            )
        ),
    ]
    for step in draw(st.lists(st.sampled_from(steps), max_size=4)):
        step(req)
    return req


@BUILD
@given(st.data())
def test_requests_raise_only_invoke_error(data: st.DataObject) -> None:
    _only((InvokeError,), lambda: data.draw(requests()))


@CALL
@given(st.data())
def test_accepted_requests_are_invoked(channel: Channel, data: st.DataObject) -> None:
    request = _only((InvokeError,), lambda: data.draw(requests()))
    assume(isinstance(request, InvokeMethodRequest))
    assert isinstance(request, InvokeMethodRequest)
    # Documented: internal metadata the transport cannot carry raises MetadataError.
    response = _only((MetadataError,), lambda: channel.invoke_method(request, co.timeout(10)))
    if response is not None:
        code = response.status.code  # type: ignore[attr-defined]
        assert code in (0, 12), response  # OK (echo) or UNIMPLEMENTED (any other method)


@CALL
@given(st.one_of(st.builds(lambda a, b: f"/{a}/{b}", any_text, any_text), junk))
def test_invoke_paths_raise_only_value_error_or_a_status(channel: Channel, path: Any) -> None:
    try:
        channel.invoke(path, b"", co.timeout(10))
    except ValueError:
        pass
    except grpc.RpcError as exc:
        assert exc.code() is grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]


@BUILD
@given(junk)
def test_app_channel_timeouts_raise_only_value_error(channel: Channel, value: Any) -> None:
    # health_probe: a bool, or ValueError; never OverflowError. (A timeout that is accepted
    # makes one HealthCheck call, which answers at once.)
    result = _only((ValueError,), lambda: channel.health_probe(value))
    assert result in (None, True, False)


# --- accepted options dial and call ---------------------------------------------------------------

printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=24)
unicode_text = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=12)
# Long enough for the call to finish and the channel to connect, up to (and past) the limits.
seconds = st.one_of(st.floats(min_value=5, max_value=2e9), long_timeouts)
millis_seconds = st.one_of(st.floats(min_value=10, max_value=2147483.7), edge_floats)

dial_options = st.one_of(
    st.builds(do.with_authority, st.one_of(printable, unicode_text)),
    st.builds(do.with_user_agent, st.one_of(printable, unicode_text)),
    st.builds(do.with_keepalive_params, millis_seconds, millis_seconds),
    st.builds(
        lambda base, top, connect: do.with_connect_params(
            base_delay=base, max_delay=max(base, top), min_connect_timeout=connect
        ),
        millis_seconds,
        millis_seconds,
        millis_seconds,
    ),
    st.builds(do.with_max_recv_msg_size, st.integers(min_value=1024, max_value=2**32)),
    st.builds(do.with_max_send_msg_size, st.integers(min_value=1024, max_value=2**32)),
    st.builds(do.with_block, seconds),
    st.builds(
        lambda key, value: do.with_channel_args((f"grpc.fuzz_{key}", value)),
        st.text("abcdefgh_", max_size=6),
        st.one_of(any_int, unicode_text),
    ),
    st.builds(do.with_default_service_config, st.dictionaries(printable, unicode_text, max_size=2)),
    st.builds(do.with_max_concurrency, any_int),
    st.builds(do.with_app_token, printable),
    st.builds(do.with_compressor, st.sampled_from(["gzip", "deflate", "identity"])),
    st.builds(do.with_codec, st.sampled_from(["proto", "json", "raw"])),
    st.builds(lambda t: do.with_default_call_options(co.timeout(t)), seconds),
)


@st.composite
def accepted_dial_option(draw: st.DrawFn) -> Any:
    # Constructors run inside st.builds: a refusal must be an OptionError, and is then skipped.
    try:
        return draw(dial_options)
    except OptionError:
        assume(False)


@CALL
@given(accepted_dial_option(), seconds)
def test_accepted_options_dial_and_call(own_app: OwnApp, option: Any, call_timeout: Any) -> None:
    per_call = _only((OptionError,), lambda: co.timeout(call_timeout))
    assume(per_call is not None)
    with dial(own_app.target, do.with_insecure(), option) as channel:
        response = channel.invoke_method(InvokeMethodRequest("echo").with_data(b"hi"), per_call)
    assert response.status.code == 0, (option, response)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(accepted_dial_option())
def test_accepted_options_dial_and_call_aio(own_app: OwnApp, option: Any) -> None:
    import asyncio

    async def main() -> int:
        async with aio.dial(own_app.target, do.with_insecure(), option) as channel:
            request = InvokeMethodRequest("echo").with_data(b"hi")
            response = await channel.invoke_method(request, co.timeout(10))
            return response.status.code

    assert asyncio.run(main()) == 0, option


def test_the_largest_values_are_the_documented_ones() -> None:
    # The limits the properties above run into, stated once.
    assert df.MAX_TIMEOUT == 1e9
    co.timeout(1e9)
    do.with_block(1e9)
    do.with_keepalive_params(2147483.647, 2147483.647)
    do.with_channel_args(("grpc.fuzz", 2**31 - 1), ("grpc.fuzz", -(2**31)))
    for make in (lambda: co.timeout(math.nextafter(1e9, math.inf)), lambda: do.with_block(1e10)):
        with pytest.raises(OptionError):
            make()
