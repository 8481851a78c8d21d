"""grpc_channel.metadata: Metadata semantics, validation, contexts, Dapr conversion, real wire."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading

import grpc
import pytest
from support_harness import ECHO, RAW, Recorder, aio_server, sync_server

from grpc_channel.metadata import (
    HTTP_PERMANENT_HEADERS,
    RESERVED_KEYS,
    Metadata,
    MetadataError,
    append_to_outgoing,
    from_incoming,
    from_outgoing,
    grpc_to_internal,
    incoming_metadata,
    internal_to_grpc,
    outgoing_metadata,
    outgoing_pairs,
)

# --- construction -----------------------------------------------------------------------------


def test_construct_from_mapping_single_values_and_iterables() -> None:
    md = Metadata({"A": "1", "b": ["2", "3"], "c-bin": [b"\x00", b"\xff"], "d": ()})
    assert md == {"a": ["1"], "b": ["2", "3"], "c-bin": [b"\x00", b"\xff"]}
    assert "d" not in md  # an empty iterable adds no key


def test_construct_from_pairs_appends_in_order() -> None:
    md = Metadata([("k", "1"), ("K", "2"), ("x", "y"), ("k", "3")])
    assert md.get("k") == ["1", "2", "3"]
    assert list(md.keys()) == ["k", "x"]


def test_construct_from_grpc_aio_metadata_object() -> None:
    md = Metadata(grpc.aio.Metadata(("a", "1"), ("a", "2")))
    assert md == {"a": ["1", "2"]}


@pytest.mark.parametrize("bad", ["a=1", b"a", 42, [("a",)], [("a", "1", "2")], ["ab"], [42]])
def test_construct_refuses_what_is_not_pairs(bad: object) -> None:
    with pytest.raises(MetadataError, match=r"mapping or an iterable|pair"):
        Metadata(bad)  # type: ignore[arg-type]


def test_pairs_and_odd_count_names_the_count() -> None:
    assert Metadata.pairs("a", "1", "A", "2") == {"a": ["1", "2"]}
    assert Metadata.pairs() == {}
    with pytest.raises(MetadataError, match=r"even number of arguments .*got 3"):
        Metadata.pairs("a", "1", "b")
    assert issubclass(MetadataError, ValueError)


# --- reading and writing ----------------------------------------------------------------------


def test_get_set_append_delete_lower_case_the_key() -> None:
    md = Metadata()
    md.set("X-Key", "1")
    md.append("x-KEY", "2", "3")
    assert md.get("X-KEY") == ["1", "2", "3"]
    assert md["x-key"] == ["1", "2", "3"]
    assert "X-Key" in md and "x-key" in md
    md.set("X-KEY", "only")
    assert md.get("x-key") == ["only"]
    md.delete("X-Key")
    assert "x-key" not in md and md.get("x-key") == [] and len(md) == 0
    md.delete("absent")  # no error
    with pytest.raises(KeyError):
        md["absent"]


def test_set_and_append_without_values_change_nothing() -> None:
    md = Metadata({"a": "1"})
    md.set("a")
    md.append("b")
    assert md == {"a": ["1"]}


def test_reads_lower_case_ascii_only() -> None:
    md = Metadata({"k": "1"})
    assert md.get("K") == ["1"] and "K" in md
    assert md.get("\u212a") == [] and "\u212a" not in md  # the Kelvin sign is not "k"
    md.delete("\u212a")
    assert md == {"k": ["1"]}


def test_reads_never_raise_for_invalid_keys() -> None:
    md = Metadata({"a": "1"})
    assert md.get("bad key") == []
    assert md.get(42) == []  # type: ignore[arg-type]
    assert 42 not in md
    assert ":path" not in md
    md.delete(42)  # type: ignore[arg-type]
    assert md == {"a": ["1"]}


def test_get_items_values_return_copies() -> None:
    md = Metadata({"a": ["1", "2"]})
    md.get("a").append("x")
    md["a"].append("x")
    for _, values in md.items():
        values.append("x")
    for values in md.values():
        values.append("x")
    assert md.get("a") == ["1", "2"]


def test_copy_shares_no_lists() -> None:
    md = Metadata({"a": ["1"], "b-bin": [b"x"]})
    cp = md.copy()
    cp.append("a", "2")
    cp.set("b-bin", b"y")
    md.append("c", "3")
    assert md == {"a": ["1"], "b-bin": [b"x"], "c": ["3"]}
    assert cp == {"a": ["1", "2"], "b-bin": [b"y"]}


def test_join_in_order_without_sharing() -> None:
    one = Metadata({"a": "1"})
    two = Metadata({"a": "2", "b": "x"})
    joined = Metadata.join(one, two, {"A": "3"}, [("c", "z")])
    assert joined == {"a": ["1", "2", "3"], "b": ["x"], "c": ["z"]}
    joined.append("a", "4")
    assert one == {"a": ["1"]} and two == {"a": ["2"], "b": ["x"]}
    assert Metadata.join() == {}


def test_failed_write_leaves_metadata_unchanged() -> None:
    md = Metadata({"a": "1"})
    with pytest.raises(MetadataError):
        md.set("a", "ok", "bad\n")
    with pytest.raises(MetadataError):
        md.append("a", "ok", 3)  # type: ignore[arg-type]
    assert md == {"a": ["1"]}


def test_equality_and_repr_hide_credentials() -> None:
    md = Metadata({"authorization": "Bearer s3cr3t", "dapr-api-token": "tok3n", "x": "1"})
    assert md == Metadata(md)
    assert md != Metadata({"x": "1"})
    assert md != 42
    text = repr(md)
    assert "s3cr3t" not in text and "tok3n" not in text
    assert "'x': ['1']" in text and "<redacted>" in text
    with pytest.raises(TypeError):
        hash(md)


def test_to_grpc_order_cache_and_invalidation() -> None:
    md = Metadata.pairs("a", "1", "b-bin", b"\x00", "a", "2")
    assert md.to_grpc() == (("a", "1"), ("a", "2"), ("b-bin", b"\x00"))
    assert md.to_grpc() is md.to_grpc()  # cached
    md.append("c", "3")
    assert md.to_grpc()[-1] == ("c", "3")
    md.delete("a")
    assert md.to_grpc() == (("b-bin", b"\x00"), ("c", "3"))
    md.clear()
    assert md.to_grpc() == ()


# --- -bin values ------------------------------------------------------------------------------


def test_bin_values_are_bytes_and_str_is_utf8_encoded() -> None:
    md = Metadata()
    md.append("x-bin", b"\x00\x01", bytearray(b"\x02"), memoryview(b"\x03"), "é")
    assert md.get("x-bin") == [b"\x00\x01", b"\x02", b"\x03", "é".encode()]
    assert all(type(v) is bytes for v in md.get("x-bin"))


def test_bin_str_that_cannot_be_encoded_is_refused() -> None:
    with pytest.raises(MetadataError, match=r"binary metadata key 'x-bin'.*UTF-8"):
        Metadata({"x-bin": "\ud800"})
    with pytest.raises(MetadataError, match=r"binary metadata key 'x-bin'.*got int"):
        Metadata({"x-bin": 5})


def test_text_key_takes_printable_ascii_bytes_as_str_only() -> None:
    md = Metadata({"a": b"plain text"})
    assert md.get("a") == ["plain text"]
    with pytest.raises(MetadataError, match=r"key 'a'.*position 1"):
        Metadata({"a": b"x\x00"})
    with pytest.raises(MetadataError, match=r"key 'a': expected str, got int"):
        Metadata({"a": 1})
    with pytest.raises(MetadataError, match=r"key 'a': expected str, got NoneType"):
        Metadata({"a": None})


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "pattern"),
    [
        ("", r"must not be empty"),
        ("a b", r"invalid metadata key 'a b': character ' ' at position 1"),
        ("ok/no", r"'ok/no': character '/' at position 2"),
        ("caf\u00e9", r"character '\\xe9' at position 3"),
        ("\u212a", r"character '\\u212a' at position 0"),  # Kelvin sign: not lower-cased to "k"
        ("a:b", r"character ':' at position 1"),
        (":", r"no name after ':'"),
    ],
)
def test_invalid_keys_are_named_with_the_allowed_set(key: str, pattern: str) -> None:
    with pytest.raises(MetadataError, match=pattern) as info:
        Metadata({key: "v"})
    if key:
        assert "0-9 a-z - _ ." in str(info.value) or "':'" in str(info.value)


def test_non_str_key_is_refused() -> None:
    with pytest.raises(MetadataError, match=r"key must be str, got bytes"):
        Metadata([(b"a", "1")])  # type: ignore[list-item]


def test_valid_key_characters_and_upper_case() -> None:
    md = Metadata({"AZ-09_.x": "v", "-bin": b"b"})
    assert md == {"az-09_.x": ["v"], "-bin": [b"b"]}


@pytest.mark.parametrize(
    ("value", "position", "char"),
    [("\n", 0, "000A"), ("ab\x7f", 2, "007F"), ("ok é", 3, "00E9"), ("\t", 0, "0009")],
)
def test_invalid_text_values_name_key_and_position(value: str, position: int, char: str) -> None:
    with pytest.raises(MetadataError) as info:
        Metadata({"x-key": value})
    message = str(info.value)
    assert "'x-key'" in message and f"position {position}" in message and f"U+{char}" in message
    assert "0x20-0x7E" in message


def test_secret_values_are_never_in_errors() -> None:
    with pytest.raises(MetadataError) as info:
        Metadata({"authorization": "Bearer s3cr3t\u00e9"})
    assert "s3cr3t" not in str(info.value) and "U+" not in str(info.value)
    assert "position 13" in str(info.value)


def test_empty_and_spaced_values_are_valid() -> None:
    md = Metadata({"a": ["", "  x  ", "~!@#$%^&*()"]})
    assert md.get("a") == ["", "  x  ", "~!@#$%^&*()"]


@pytest.mark.parametrize("key", [*sorted(RESERVED_KEYS), ":path", ":authority", "Content-Type"])
def test_reserved_keys_are_refused_on_every_insertion(key: str) -> None:
    pattern = r"reserved for the gRPC transport"
    with pytest.raises(MetadataError, match=pattern):
        Metadata({key: "v"})
    with pytest.raises(MetadataError, match=pattern):
        Metadata.pairs(key, "v")
    with pytest.raises(MetadataError, match=pattern):
        Metadata().set(key, "v")
    with pytest.raises(MetadataError, match=pattern):
        Metadata().append(key, "v")


def test_reserved_key_error_suggests_the_option() -> None:
    with pytest.raises(MetadataError, match=r"'grpc-timeout'.*call timeout"):
        Metadata.pairs("grpc-timeout", "1S")
    with pytest.raises(MetadataError, match=r"'user-agent'.*dial option"):
        Metadata.pairs("User-Agent", "me")


def test_keys_grpc_handles_but_does_not_reserve_are_accepted() -> None:
    md = Metadata.pairs(
        "grpc-status-details-bin", b"\x08\x03", "grpc-retry-pushback-ms", "10", "grpc-foo", "x"
    )
    assert len(md.to_grpc()) == 3


# --- received metadata ------------------------------------------------------------------------


def test_from_grpc_keeps_everything_and_to_grpc_drops_the_unsendable() -> None:
    received = (
        ("user-agent", "grpc-python"),
        (":authority", "h"),
        ("x-a", "1"),
        ("x-bin", b"\x00"),
        ("x-odd", "caf\u00e9"),
        ("X-Upper", "u"),
    )
    md = Metadata.from_grpc(received)
    assert md.get("user-agent") == ["grpc-python"]
    assert md.get(":authority") == ["h"]
    assert md.get("x-odd") == ["caf\u00e9"]
    assert md.get("x-upper") == ["u"]
    assert md.to_grpc() == (("x-a", "1"), ("x-bin", b"\x00"), ("x-upper", "u"))
    # The flag travels with copies and joins.
    assert md.copy().to_grpc() == md.to_grpc()
    assert Metadata.join(Metadata({"z": "1"}), md).to_grpc()[0] == ("z", "1")
    assert ("user-agent", "grpc-python") not in Metadata.join(md).to_grpc()


def test_from_grpc_conversions_and_none() -> None:
    assert Metadata.from_grpc(None) == {}
    assert Metadata.from_grpc(()) == {}
    md = Metadata.from_grpc([("a", b"\xe9t\xe9"), ("s-bin", "text")])
    assert md.get("a") == ["\u00e9t\u00e9"]  # bytes for a text key: Latin-1
    assert md.get("s-bin") == [b"text"]
    assert md.to_grpc() == (("s-bin", b"text"),)
    listed: list[object] = [["k", "v"]]  # any 2-item sequence
    assert Metadata.from_grpc(listed) == {"k": ["v"]}  # type: ignore[arg-type]


def test_from_grpc_reads_grpcio_metadatum_objects(served_target: str) -> None:
    with grpc.insecure_channel(served_target) as channel:
        _, call = channel.unary_unary(ECHO, None, None).with_call(
            b"", metadata=(("x-a", "1"),), timeout=10
        )
        received = call.initial_metadata()
    assert type(received[0]) is not tuple  # grpcio's _Metadatum
    assert Metadata.from_grpc(received) == {"x-a": ["1"]}


@pytest.mark.parametrize(
    ("pairs", "pattern"),
    [
        ([("a",)], r"must be \(key, value\) pairs"),
        (["ab"], r"must be \(key, value\) pairs, got str"),
        ([b"ab"], r"must be \(key, value\) pairs, got bytes"),
        ({"a": "1"}, r"from_grpc takes \(key, value\) pairs, got dict"),
        ("ab", r"from_grpc takes \(key, value\) pairs, got str"),
        (5, r"from_grpc takes \(key, value\) pairs, got int"),
        ([42], r"must be \(key, value\) pairs"),
        ([("bad key", "v")], r"invalid metadata key 'bad key'"),
        ([("a", 3)], r"key 'a': expected str, got int"),
        ([("a-bin", 3)], r"binary metadata key 'a-bin'"),
    ],
)
def test_from_grpc_malformed_input(pairs: list[object], pattern: str) -> None:
    with pytest.raises(MetadataError, match=pattern):
        Metadata.from_grpc(pairs)  # type: ignore[arg-type]


def test_replace_from_grpc_fills_in_place() -> None:
    holder = Metadata({"old": "1"})
    same = holder
    holder.replace_from_grpc((("new", "2"), ("user-agent", "x")))
    assert same == {"new": ["2"], "user-agent": ["x"]}
    assert same.to_grpc() == (("new", "2"),)
    with pytest.raises(MetadataError):
        holder.replace_from_grpc([("bad key", "v")])
    assert same == {"new": ["2"], "user-agent": ["x"]}


# --- contexts ---------------------------------------------------------------------------------


def test_outgoing_scope_replaces_and_restores() -> None:
    assert from_outgoing() == {} and outgoing_pairs() == ()
    with outgoing_metadata({"a": "1"}) as inside:
        assert inside == {"a": ["1"]}
        assert from_outgoing() == {"a": ["1"]}
        with outgoing_metadata(Metadata({"b": "2"})):
            assert from_outgoing() == {"b": ["2"]}  # replaces, not merges
        with outgoing_metadata():
            assert from_outgoing() == {}
        assert outgoing_pairs() == (("a", "1"),)
    assert from_outgoing() == {}


def test_outgoing_metadata_is_copied_both_ways() -> None:
    source = Metadata({"a": "1"})
    with outgoing_metadata(source) as inside:
        source.append("a", "later")
        inside.append("a", "mine")
        from_outgoing().append("a", "x")
        assert from_outgoing() == {"a": ["1"]}


def test_append_to_outgoing_inside_a_scope_ends_with_it() -> None:
    with outgoing_metadata({"a": "1"}):
        append_to_outgoing("a", "2", "B", "3")
        assert from_outgoing() == {"a": ["1", "2"], "b": ["3"]}
        with append_to_outgoing("c", "4"):
            assert outgoing_pairs()[-1] == ("c", "4")
        assert "c" not in from_outgoing()
    assert from_outgoing() == {}


def test_append_to_outgoing_outside_a_scope_lasts_for_the_context() -> None:
    def body() -> tuple[Metadata, Metadata]:
        append_to_outgoing("a", "1")
        first = from_outgoing()
        append_to_outgoing("a", "2")
        return first, from_outgoing()

    ctx = contextvars.copy_context()
    first, second = ctx.run(body)
    assert first == {"a": ["1"]} and second == {"a": ["1", "2"]}
    assert ctx.run(from_outgoing) == {"a": ["1", "2"]}
    assert from_outgoing() == {}  # the caller's context was never touched


def test_append_to_outgoing_refuses_bad_input_and_changes_nothing() -> None:
    with outgoing_metadata({"a": "1"}):
        with pytest.raises(MetadataError, match=r"got 3"):
            append_to_outgoing("a", "2", "b")
        with pytest.raises(MetadataError, match=r"reserved"):
            append_to_outgoing("grpc-timeout", "1S")
        assert from_outgoing() == {"a": ["1"]}


def test_incoming_scope() -> None:
    assert from_incoming() == {}
    received = Metadata.from_grpc((("user-agent", "ua"), ("x", "1")))
    with incoming_metadata(received):
        got = from_incoming()
        assert got == {"user-agent": ["ua"], "x": ["1"]}
        got.append("x", "2")
        assert from_incoming() == {"user-agent": ["ua"], "x": ["1"]}
    assert from_incoming() == {}


def test_contexts_do_not_cross_threads_unless_copied() -> None:
    seen: dict[str, Metadata] = {}

    def read(name: str) -> None:
        seen[name] = from_outgoing()

    with outgoing_metadata({"a": "1"}):
        plain = threading.Thread(target=read, args=("plain",))
        ctx = contextvars.copy_context()
        copied = threading.Thread(target=ctx.run, args=(read, "copied"))
        plain.start()
        copied.start()
        plain.join()
        copied.join()
    assert seen["plain"] == {}
    assert seen["copied"] == {"a": ["1"]}


def test_contexts_follow_asyncio_tasks() -> None:
    async def child(name: str) -> Metadata:
        append_to_outgoing("who", name)
        await asyncio.sleep(0)
        return from_outgoing()

    async def main() -> tuple[list[Metadata], Metadata]:
        with outgoing_metadata({"a": "1"}):
            results = await asyncio.gather(child("x"), child("y"))
            return list(results), from_outgoing()

    results, parent = asyncio.run(main())
    assert results[0] == {"a": ["1"], "who": ["x"]}
    assert results[1] == {"a": ["1"], "who": ["y"]}
    assert parent == {"a": ["1"]}  # the tasks' appends never leak into the parent


# --- Dapr internal metadata -------------------------------------------------------------------


def test_internal_to_grpc_dapr_rules() -> None:
    internal = {
        "X-Custom": ["1", "2"],
        "traceparent": ["00-abc-def-01"],
        "TraceState": ["k=v"],
        "grpc-trace-bin": ["AAEC"],
        "destination-app-id": ["app"],
        "Content-Type": ["application/json"],
        "accept": ["*/*"],
        "HOST": ["h"],
        "User-Agent": ["curl/8"],
        "t-bin": ["AAEC", "not base64!", "AAE", "_-8="],
        "Mixed-BIN": ["AQ=="],
        "empty": [],
        "single": "value",
    }
    md = internal_to_grpc(internal)
    assert md == {
        "x-custom": ["1", "2"],
        "dapr-content-type": ["application/json"],
        "dapr-accept": ["*/*"],
        "dapr-host": ["h"],
        "t-bin": [b"\x00\x01\x02"],
        "mixed-bin": [b"\x01"],
        "single": ["value"],
    }


@pytest.mark.parametrize(
    "spelling", ["Content-Type", "content-type", "CONTENT-TYPE", "cOnTeNt-TyPe"]
)
def test_http_header_conversion_is_case_insensitive(spelling: str) -> None:
    assert internal_to_grpc({spelling: ["text/plain"]}) == {"dapr-content-type": ["text/plain"]}


def test_every_permanent_header_is_renamed() -> None:
    md = internal_to_grpc({h.title(): ["v"] for h in HTTP_PERMANENT_HEADERS})
    assert set(md.keys()) == {"dapr-" + h for h in HTTP_PERMANENT_HEADERS}
    assert len(HTTP_PERMANENT_HEADERS) == 28


def test_http_header_conversion_off_keeps_names_and_drops_reserved() -> None:
    md = internal_to_grpc({"Host": ["h"], "Content-Type": ["x"], "Accept": ["a"]}, False)
    assert md == {"host": ["h"], "accept": ["a"]}  # content-type is the transport's


def test_internal_base64_follows_go_std_encoding() -> None:
    md = internal_to_grpc({"a-bin": ["AAEC", "AAE=", "AAE", "+/8=", "-_8=", "AA\r\nEC", "", "é"]})
    # padded standard alphabet only; CR/LF ignored; "" decodes to b"".
    assert md.get("a-bin") == [b"\x00\x01\x02", b"\x00\x01", b"\xfb\xff", b"\x00\x01\x02", b""]


def test_internal_duplicate_spellings_merge() -> None:
    md = internal_to_grpc({"X-A": ["1"], "x-a": ["2"]})
    assert md.get("x-a") == ["1", "2"]


@pytest.mark.parametrize(
    ("internal", "pattern"),
    [
        ({"bad key": ["v"]}, r"invalid metadata key 'bad key'"),
        ({"x-ok": ["line\nbreak"]}, r"key 'x-ok'.*position 4"),
        ({"x-ok": [b"bytes"]}, r"key 'x-ok' must be str, got bytes"),
        ({"x-ok": b"bytes"}, r"key 'x-ok' must be a list of str, got bytes"),
        ({"x-ok": 5}, r"key 'x-ok' must be a list of str, got int"),
        ({5: ["v"]}, r"key must be str, got int"),
    ],
)
def test_internal_invalid_input_raises_or_drops(
    internal: dict[object, object], pattern: str
) -> None:
    with pytest.raises(MetadataError, match=pattern):
        internal_to_grpc(internal)  # type: ignore[arg-type]
    mixed = {**internal, "x-good": ["g"]}
    assert internal_to_grpc(mixed, on_invalid="drop") == {"x-good": ["g"]}  # type: ignore[arg-type]


def test_internal_to_grpc_argument_checks() -> None:
    with pytest.raises(MetadataError, match=r"must be a mapping"):
        internal_to_grpc([("a", ["1"])])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"on_invalid must be 'raise' or 'drop'"):
        internal_to_grpc({}, on_invalid="ignore")  # type: ignore[arg-type]


def test_grpc_to_internal_encodes_bin_padded() -> None:
    md = Metadata({"a": ["1", "2"], "b-bin": [b"\x00", b"\xfb\xff"], "dapr-host": "h"})
    internal = grpc_to_internal(md)
    assert internal == {"a": ["1", "2"], "b-bin": ["AA==", "+/8="], "dapr-host": ["h"]}
    internal["a"].append("x")
    assert md.get("a") == ["1", "2"]
    assert grpc_to_internal({"A": "1"}) == {"a": ["1"]}
    assert grpc_to_internal(Metadata.from_grpc([("user-agent", "ua")])) == {"user-agent": ["ua"]}


def test_internal_round_trip_modulo_documented_renames() -> None:
    md = Metadata({"x": ["1"], "y-bin": [b"\x00\xff"], "accept": "a", "traceparent": "t"})
    back = internal_to_grpc(grpc_to_internal(md))
    assert back == {"x": ["1"], "y-bin": [b"\x00\xff"], "dapr-accept": ["a"]}
    assert internal_to_grpc(grpc_to_internal(md), False) == {
        "x": ["1"],
        "y-bin": [b"\x00\xff"],
        "accept": ["a"],
    }


# --- the real wire ----------------------------------------------------------------------------


def _sent() -> Metadata:
    md = Metadata()
    md.append("x-multi", "1", "2", "3")
    md.append("x-space", "  padded  ", "")
    md.append("x-data-bin", b"\x00\xff\x10", "text as utf-8 \u00e9")
    md.append("x-Upper", "U")
    return md


@pytest.mark.parametrize("aio", [False, True])
def test_metadata_round_trips_through_a_real_server(aio: bool, served_target: str) -> None:
    sent = _sent()
    target = served_target
    if aio:

        async def call() -> tuple[Metadata, Metadata, bytes]:
            async with grpc.aio.insecure_channel(target) as channel:
                rpc = channel.unary_unary(ECHO, None, None)(
                    b"body", metadata=sent.to_grpc(), timeout=10
                )
                body = await rpc
                headers = Metadata.from_grpc(await rpc.initial_metadata())
                trailers = Metadata.from_grpc(await rpc.trailing_metadata())
                return headers, trailers, body

        headers, trailers, body = asyncio.run(call())
    else:
        with grpc.insecure_channel(target) as channel:
            body, call_ = channel.unary_unary(ECHO, None, None).with_call(
                b"body", metadata=sent.to_grpc(), timeout=10
            )
            headers = Metadata.from_grpc(call_.initial_metadata())
            trailers = Metadata.from_grpc(call_.trailing_metadata())
    assert body == b"body"
    # The server forwarded what it received (its user-agent dropped by to_grpc) back to us.
    assert headers == sent
    assert trailers == sent
    assert headers.get("x-data-bin") == [b"\x00\xff\x10", "text as utf-8 \u00e9".encode()]


def test_forwarding_received_metadata_never_fails_the_call(served_target: str) -> None:
    # Received metadata with the reserved user-agent and an unsendable value is sent on as it is.
    received = Metadata.from_grpc(
        (("user-agent", "ua"), ("x-a", "1"), ("x-odd", "caf\u00e9"), ("grpc-timeout", "1S"))
    )
    with grpc.insecure_channel(served_target) as channel:
        _, call = channel.unary_unary(ECHO, None, None).with_call(
            b"", metadata=received.to_grpc(), timeout=10
        )
        assert Metadata.from_grpc(call.initial_metadata()) == {"x-a": ["1"]}


def test_reserved_keys_never_reach_a_grpcio_peer(served_target: str) -> None:
    # Why they are refused: sent raw (bypassing Metadata), grpc core swallows every one of them or
    # fails the call. grpc-message-type is reserved after grpc-go, which drops it; grpcio passes it.
    values = {"grpc-timeout": "1S", "te": "trailers", "content-type": "application/grpc+x"}
    with grpc.insecure_channel(served_target) as channel:
        raw = channel.unary_unary(RAW, None, None)
        assert json.loads(raw(b"", metadata=(("x-probe", "1"),), timeout=10))[-1] == [
            "x-probe",
            "1",
        ]
        for key in [*sorted(RESERVED_KEYS - {"grpc-message-type"}), ":path"]:
            sent: str | bytes = values.get(key, b"7" if key.endswith("-bin") else "7")
            try:
                body = raw(b"", metadata=((key, sent), ("x-probe", "1")), timeout=10)
            except grpc.RpcError:
                continue  # refused by grpc core
            if body is None:
                continue  # the call broke (grpc-status from a client)
            received = json.loads(body)
            assert [key, sent.hex() if isinstance(sent, bytes) else sent] not in received, key
            assert ["x-probe", "1"] in received


def _incoming_handler(request: bytes, context: grpc.ServicerContext) -> bytes:
    with incoming_metadata(Metadata.from_grpc(context.invocation_metadata())):
        return ",".join(str(v) for v in from_incoming().get("x-user")).encode()


async def _incoming_handler_aio(request: bytes, context: grpc.aio.ServicerContext) -> bytes:  # type: ignore[type-arg]
    with incoming_metadata(Metadata.from_grpc(context.invocation_metadata())):
        await asyncio.sleep(0)
        return ",".join(str(v) for v in from_incoming().get("x-user")).encode()


@pytest.mark.parametrize("aio", [False, True])
def test_incoming_metadata_in_a_real_server_handler(aio: bool) -> None:
    handlers = grpc.method_handlers_generic_handler(
        "test.In",
        {
            "Who": grpc.unary_unary_rpc_method_handler(
                _incoming_handler_aio if aio else _incoming_handler
            )
        },
    )

    def calls(target: str) -> list[bytes]:
        with grpc.insecure_channel(target) as channel:
            who = channel.unary_unary("/test.In/Who", None, None)
            return [who(b"", metadata=(("x-user", name),), timeout=10) for name in ("ann", "bob")]

    if aio:

        async def main() -> list[bytes]:
            async with aio_server(Recorder(), handler=handlers) as port:
                return await asyncio.to_thread(calls, f"127.0.0.1:{port}")

        results = asyncio.run(main())
    else:
        with sync_server(Recorder(), workers=2, handler=handlers) as port:
            results = calls(f"127.0.0.1:{port}")
    assert results == [b"ann", b"bob"]  # each call saw its own metadata
    assert from_incoming() == {}
