"""Property tests for grpc_channel.metadata (hypothesis, 500 examples each)."""

from __future__ import annotations

import base64
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from grpc_channel.metadata import (
    HTTP_PERMANENT_HEADERS,
    RESERVED_KEYS,
    Metadata,
    MetadataError,
    MetadataValue,
    grpc_to_internal,
    internal_to_grpc,
)

SETTINGS = settings(max_examples=500, deadline=None)
# Every code point, lone surrogates included (st.characters() leaves those out by default).
any_char = st.one_of(st.characters(), st.characters(categories=["Cs"]))


def any_text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(any_char, max_size=max_size)


KEY_RE = re.compile(r"[0-9a-z_.\-]+")
NOT_COPIED = {"traceparent", "tracestate", "grpc-trace-bin", "destination-app-id"}


def is_valid_key(key: str) -> bool:
    low = key.lower()
    return key.isascii() and KEY_RE.fullmatch(low) is not None and low not in RESERVED_KEYS


def is_well_formed_key(key: str) -> bool:
    """Valid, or a valid name behind one ':' (a pseudo-header: well formed, but reserved)."""
    low = key.lower()
    body = low[1:] if low.startswith(":") else low
    return key.isascii() and KEY_RE.fullmatch(body) is not None


def is_printable_ascii(text: str) -> bool:
    return all(0x20 <= ord(ch) <= 0x7E for ch in text)


KEY_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.-"
valid_keys = st.text(KEY_ALPHABET, min_size=1, max_size=10).filter(
    lambda k: k.lower() not in RESERVED_KEYS
)
# Keys the Dapr conversion treats specially, mixed in with random ones.
special_keys = st.sampled_from(
    [*sorted((HTTP_PERMANENT_HEADERS - RESERVED_KEYS) | NOT_COPIED), "Accept", "HOST", "x-bin"]
)
text_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=10)
bin_values = st.binary(max_size=10)


def fit_value(pair: tuple[str, MetadataValue]) -> tuple[str, MetadataValue]:
    """Make a drawn value the right type for its key: bytes for -bin keys, text otherwise."""
    key, value = pair
    if key.lower().endswith("-bin"):
        return key, value.encode() if isinstance(value, str) else value
    return key, value if isinstance(value, str) else value.hex()


valid_pairs = st.lists(
    st.tuples(st.one_of(valid_keys, special_keys), st.one_of(text_values, bin_values)).map(
        fit_value
    ),
    max_size=6,
)


def grouped(pairs: list[tuple[str, MetadataValue]]) -> dict[str, list[MetadataValue]]:
    out: dict[str, list[MetadataValue]] = {}
    for key, value in pairs:
        out.setdefault(key.lower(), []).append(value)
    return out


@SETTINGS
@given(valid_pairs)
def test_valid_pairs_round_trip_through_grpc_form(pairs: list[tuple[str, MetadataValue]]) -> None:
    md = Metadata(pairs)
    assert md == grouped(pairs)
    wire = md.to_grpc()
    assert grouped(list(wire)) == grouped(pairs)
    assert Metadata.from_grpc(wire) == md
    assert Metadata(wire) == md
    assert Metadata.pairs(*[x for pair in pairs for x in pair]) == md


@SETTINGS
@given(valid_pairs, st.booleans())
def test_internal_round_trip_is_identity_modulo_documented_renames(
    pairs: list[tuple[str, MetadataValue]], conversion: bool
) -> None:
    md = Metadata(pairs)
    expected: dict[str, list[MetadataValue]] = {}
    for key, values in md.items():
        if key in NOT_COPIED:
            continue
        if conversion and key in HTTP_PERMANENT_HEADERS:
            key = "dapr-" + key
        expected.setdefault(key, []).extend(values)
    assert internal_to_grpc(grpc_to_internal(md), conversion) == expected


internal_keys = st.text(KEY_ALPHABET[:36] + "_.-", min_size=1, max_size=12).filter(
    lambda k: k not in RESERVED_KEYS
)
internal_maps = st.dictionaries(
    st.one_of(internal_keys, special_keys.map(str.lower)),
    st.lists(st.one_of(text_values, bin_values), max_size=3),
    max_size=5,
).map(
    lambda d: {
        k: [
            base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode()
            if k.endswith("-bin")
            else (v if isinstance(v, str) else v.hex())
            for v in vs
        ]
        for k, vs in d.items()
    }
)


@SETTINGS
@given(internal_maps)
def test_internal_to_grpc_and_back_is_identity_modulo_renames(
    internal: dict[str, list[str]],
) -> None:
    expected: dict[str, list[str]] = {}
    for key, values in internal.items():
        if key in NOT_COPIED or not values:
            continue
        if key in HTTP_PERMANENT_HEADERS:
            key = "dapr-" + key
        expected.setdefault(key, []).extend(values)
    assert grpc_to_internal(internal_to_grpc(internal)) == expected


@SETTINGS
@given(any_text(12))
def test_any_key_is_accepted_exactly_when_valid_else_named(key: str) -> None:
    try:
        md = Metadata.pairs(key, b"v" if key.lower().endswith("-bin") else "v")
    except MetadataError as exc:
        assert not is_valid_key(key)
        message = str(exc)
        if not key:
            assert "must not be empty" in message
        elif key == ":":
            assert "no name after ':'" in message
        elif is_well_formed_key(key):
            assert f"{key.lower()!r} is reserved for the gRPC transport" in message
        else:
            assert ascii(key) in message and "0-9 a-z - _ ." in message
    else:
        assert is_valid_key(key)
        assert list(md.keys()) == [key.lower()]


@SETTINGS
@given(valid_keys.filter(lambda k: not k.lower().endswith("-bin")), any_text(12))
def test_any_text_value_is_accepted_exactly_when_printable_ascii(key: str, value: str) -> None:
    try:
        md = Metadata.pairs(key, value)
    except MetadataError as exc:
        assert not is_printable_ascii(value)
        first_bad = next(i for i, ch in enumerate(value) if not 0x20 <= ord(ch) <= 0x7E)
        assert repr(key.lower()) in str(exc) and f"position {first_bad}" in str(exc)
    else:
        assert is_printable_ascii(value)
        assert md.get(key) == [value]


@SETTINGS
@given(valid_keys, st.binary(max_size=12))
def test_any_bytes_value(key: str, value: bytes) -> None:
    is_bin = key.lower().endswith("-bin")
    try:
        md = Metadata.pairs(key, value)
    except MetadataError as exc:
        assert not is_bin and not is_printable_ascii(value.decode("latin-1"))
        assert repr(key.lower()) in str(exc)
    else:
        assert md.get(key) == [value if is_bin else value.decode("ascii")]


anything = st.one_of(
    st.none(),
    st.integers(),
    any_text(8),
    st.binary(max_size=8),
    st.lists(
        st.one_of(
            st.tuples(any_text(8), st.one_of(any_text(8), st.binary(max_size=8))),
            st.tuples(any_text(4)),
            any_text(4),
            st.integers(),
        ),
        max_size=5,
    ),
    st.dictionaries(
        st.one_of(any_text(8), st.integers()),
        st.one_of(
            any_text(8),
            st.binary(max_size=8),
            st.integers(),
            st.none(),
            st.lists(st.one_of(any_text(8), st.binary(max_size=8)), max_size=3),
        ),
        max_size=5,
    ),
)


@SETTINGS
@given(anything)
def test_no_input_crashes_the_constructor_with_anything_but_metadata_error(source: object) -> None:
    try:
        md = Metadata(source)  # type: ignore[arg-type]
    except MetadataError:
        return
    # Whatever was accepted is valid: it survives a re-validating copy through the wire form.
    assert Metadata(md.to_grpc()) == md


received_pairs = st.lists(
    st.tuples(any_text(10), st.one_of(any_text(10), st.binary(max_size=10))),
    max_size=6,
)


@SETTINGS
@given(anything)
def test_no_input_crashes_from_grpc_with_anything_but_metadata_error(source: object) -> None:
    try:
        md = Metadata.from_grpc(source)  # type: ignore[arg-type]
    except MetadataError:
        return
    wire = md.to_grpc()
    assert Metadata(wire).to_grpc() == wire


@SETTINGS
@given(received_pairs)
def test_from_grpc_never_crashes_and_to_grpc_is_always_sendable(
    pairs: list[tuple[str, MetadataValue]],
) -> None:
    try:
        md = Metadata.from_grpc(pairs)
    except MetadataError:
        assert not all(is_well_formed_key(key) for key, _ in pairs)
        return
    assert all(is_well_formed_key(key) for key, _ in pairs)
    # Every value received is kept ...
    assert sum(len(v) for v in md.values()) == len(pairs)
    # ... and what goes back on the wire passes the strict checks.
    wire = md.to_grpc()
    assert Metadata(wire).to_grpc() == wire


@SETTINGS
@given(
    st.dictionaries(
        any_text(10),
        st.one_of(st.lists(any_text(10), max_size=3), any_text(5)),
        max_size=6,
    ),
    st.booleans(),
)
def test_internal_to_grpc_on_arbitrary_input_raises_or_drops(
    internal: dict[str, list[str]], conversion: bool
) -> None:
    dropped = internal_to_grpc(internal, conversion, on_invalid="drop")
    assert Metadata(dropped.to_grpc()) == dropped  # only valid, sendable metadata comes out
    try:
        strict = internal_to_grpc(internal, conversion)
    except MetadataError:
        return
    assert strict == dropped
