"""AppToken (client) and TokenAuth (server) against real servers, sync and aio, all shapes."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from support_harness import (
    MODES,
    SHAPES,
    UU,
    Recorder,
    aio_client,
    aio_server,
    call_aio,
    call_sync,
    expected,
    refused_code,
    sync_client,
    sync_server,
)

from grpc_channel.interceptors import CallShape, ClientCall
from grpc_channel.interceptors._chain import compose
from grpc_channel.interceptors._token import DEFAULT_SKIP_METHODS, TOKEN_ENV, AppToken, TokenAuth

SECRET = "s3cret-t0ken"


def _run(aio: bool, mode: str, shape: str, client: Any, server: Any, request: bytes) -> Any:
    """One call; returns the response list or the RpcError raised."""
    rec = Recorder()
    if aio:

        async def main() -> Any:
            async with (
                aio_server(rec, server.aio_server_interceptors()) as port,
                aio_client(port, client, mode) as channel,
            ):
                try:
                    return await call_aio(channel, shape, request)
                except grpc.RpcError as exc:
                    return exc

        return asyncio.run(main()), rec
    with (
        sync_server(rec, server.server_interceptors()) as port,
        sync_client(port, client, mode) as channel,
    ):
        try:
            return call_sync(channel, shape, request), rec
        except grpc.RpcError as exc:
            return exc, rec


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aio", [False, True])
def test_right_token_passes(aio: bool, mode: str, shape: str) -> None:
    out, rec = _run(aio, mode, shape, compose(AppToken(SECRET)), compose(TokenAuth(SECRET)), b"x")
    assert out == expected(shape, b"x")
    assert rec.metadata[0]["dapr-api-token"] == SECRET


@pytest.mark.parametrize("client_token", [None, "wrong-token"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aio", [False, True])
def test_missing_or_wrong_token_is_unauthenticated_before_the_handler(
    aio: bool, mode: str, shape: str, client_token: str | None, monkeypatch: Any
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    client = compose(AppToken(client_token))
    out, rec = _run(aio, mode, shape, client, compose(TokenAuth(SECRET)), b"x")
    assert isinstance(out, grpc.RpcError)
    assert refused_code(out, aio, shape) in (grpc.StatusCode.UNAUTHENTICATED, None)
    assert rec.handled == 0
    details = out.details() or ""
    assert SECRET not in details and "wrong-token" not in details
    assert "dapr-api-token" in details or details == "" or "Core" in details


@pytest.mark.parametrize("aio", [False, True])
def test_custom_header_name(aio: bool) -> None:
    client = compose(AppToken(SECRET, header="x-app-token"))
    out, rec = _run(aio, "wrap", "unary_unary", client, compose(TokenAuth(SECRET)), b"x")
    assert isinstance(out, grpc.RpcError)  # the server still expects dapr-api-token
    assert out.code() is grpc.StatusCode.UNAUTHENTICATED
    out, rec = _run(
        aio,
        "wrap",
        "unary_unary",
        client,
        compose(TokenAuth(SECRET, header="x-app-token")),
        b"x",
    )
    assert out == [b"echo:x"]
    assert rec.metadata[0]["x-app-token"] == SECRET
    assert "dapr-api-token" not in rec.metadata[0]


def test_skip_methods_are_not_checked() -> None:
    assert "/grpc.health.v1.Health/Check" in DEFAULT_SKIP_METHODS
    assert "/dapr.proto.runtime.v1.AppCallbackHealthCheck/HealthCheck" in DEFAULT_SKIP_METHODS
    server = compose(TokenAuth(SECRET, skip_methods={UU}))
    out, rec = _run(False, "wrap", "unary_unary", None, server, b"x")
    assert out == [b"echo:x"]
    out, rec = _run(False, "wrap", "unary_stream", None, server, b"x")
    assert out.code() is grpc.StatusCode.UNAUTHENTICATED
    assert rec.handled == 0


def test_tokens_from_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    out, rec = _run(False, "wrap", "unary_unary", compose(AppToken()), compose(TokenAuth()), b"x")
    assert out == [b"echo:x"]
    assert rec.metadata[0]["dapr-api-token"] == "from-env"
    monkeypatch.delenv(TOKEN_ENV)
    silent = AppToken()
    assert not silent.enabled
    out, rec = _run(False, "wrap", "unary_unary", compose(silent), compose(), b"x")
    assert out == [b"echo:x"]
    assert "dapr-api-token" not in rec.metadata[0]
    with pytest.raises(ValueError, match="TokenAuth needs a token"):
        TokenAuth()


def test_token_never_shows_in_repr_or_errors() -> None:
    client, server = AppToken(SECRET), TokenAuth(SECRET)
    assert SECRET not in repr(client) and SECRET not in repr(server)
    assert SECRET not in repr(compose(client, server))
    with pytest.raises(ValueError) as info:
        AppToken("bad\ntoken-" + SECRET)
    assert SECRET not in str(info.value)
    with pytest.raises(ValueError, match="printable ASCII"):
        TokenAuth("caf\u00e9")


@pytest.mark.parametrize("header", ["", "Upper", "grpc-token", "tok-bin", "sp ace"])
def test_bad_header_names_are_refused(header: str) -> None:
    with pytest.raises(ValueError, match="header"):
        AppToken(SECRET, header=header)
    with pytest.raises(ValueError, match="header"):
        TokenAuth(SECRET, header=header)


def test_bad_skip_methods_are_refused() -> None:
    with pytest.raises(ValueError, match="full method paths"):
        TokenAuth(SECRET, skip_methods=["Health/Check"])


def test_start_replaces_any_token_and_appends_the_channels(monkeypatch: Any) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)

    def started(token: AppToken, pairs: list[tuple[str, str | bytes]]) -> list[Any]:
        call = ClientCall("/a.B/C", CallShape.UNARY_UNARY, pairs, None, None, 0.0)
        token.client_start(call)
        return call.metadata

    assert started(AppToken(SECRET), []) == [("dapr-api-token", SECRET)]
    assert started(AppToken(SECRET), [("a", "1"), ("dapr-api-token", "theirs"), ("b", b"2")]) == [
        ("a", "1"),
        ("b", b"2"),
        ("dapr-api-token", SECRET),
    ]
    custom = AppToken(SECRET, header="x-token")
    assert started(custom, [("x-token", "old"), ("dapr-api-token", "kept")]) == [
        ("dapr-api-token", "kept"),
        ("x-token", SECRET),
    ]
    untouched = [("dapr-api-token", "theirs")]
    assert started(AppToken(None), list(untouched)) == untouched  # no token: nothing to add
