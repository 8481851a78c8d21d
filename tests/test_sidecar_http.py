"""SidecarHttp: health paths, the Prometheus scrape, 404/405, start/stop; real urllib requests."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from prometheus_client import CollectorRegistry

from grpc_channel.sidecar.http import (
    HEALTH_PATHS,
    SidecarHttp,
    prometheus_meter_provider,
)
from grpc_channel.sidecar.telemetry import SidecarTelemetry


def _get(port: int, path: str, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read(), dict(err.headers)


class _Health:
    """A toggled health check; ``boom`` makes it raise."""

    def __init__(self) -> None:
        self.ok = True
        self.boom = False
        self.lock = threading.Lock()

    def __call__(self) -> bool:
        with self.lock:
            if self.boom:
                raise RuntimeError("check failed")
            return self.ok


@pytest.fixture
def health() -> _Health:
    return _Health()


@pytest.fixture
def served(health: _Health) -> Iterator[tuple[int, CollectorRegistry]]:
    provider, registry = prometheus_meter_provider()
    try:
        with SidecarHttp(healthy=health, registry=registry) as http:
            yield http.port, registry
    finally:
        provider.shutdown()


@pytest.mark.parametrize("path", sorted(HEALTH_PATHS))
def test_health_paths_answer_204_when_healthy_and_503_when_not_or_broken(
    served: tuple[int, CollectorRegistry], health: _Health, path: str
) -> None:
    port, _ = served
    status, body, _ = _get(port, path)
    assert (status, body) == (204, b"")
    health.ok = False
    assert _get(port, path)[0] == 503
    health.ok, health.boom = True, True
    assert _get(port, path)[0] == 503
    health.boom = False
    assert _get(port, path + "?probe=1")[0] == 204


def test_metrics_scrape_shows_the_duration_histogram_buckets_after_a_call() -> None:
    provider, registry = prometheus_meter_provider()
    try:
        observer = SidecarTelemetry("me", meter_provider=provider)
        call = observer.begin("/pkg.Svc/Do", "other", False, ())
        call.end(grpc.StatusCode.NOT_FOUND)
        with SidecarHttp(healthy=lambda: True, registry=registry) as http:
            status, body, headers = _get(http.port, "/metrics")
    finally:
        provider.shutdown()
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    buckets = [
        line for line in text.splitlines() if line.startswith("rpc_server_call_duration_seconds_")
    ]
    assert any('le="0.0005"' in line for line in buckets), text
    assert any('le="10.0"' in line for line in buckets), text
    count = [line for line in buckets if line.startswith("rpc_server_call_duration_seconds_count")]
    assert len(count) == 1 and count[0].endswith(" 1.0")
    assert 'rpc_grpc_status_code="5"' in count[0]
    assert 'grpc_channel_target_app_id="other"' in count[0]


def test_two_meter_providers_in_one_process_have_separate_registries() -> None:
    first, first_registry = prometheus_meter_provider()
    second, second_registry = prometheus_meter_provider()
    try:
        SidecarTelemetry("a", meter_provider=first).begin("/p.S/M", "x", False, ()).end(
            grpc.StatusCode.OK
        )
        with (
            SidecarHttp(healthy=lambda: True, registry=first_registry) as one,
            SidecarHttp(healthy=lambda: True, registry=second_registry) as two,
        ):
            assert b'grpc_channel_app_id="a"' in _get(one.port, "/metrics")[1]
            assert b'grpc_channel_app_id="a"' not in _get(two.port, "/metrics")[1]
    finally:
        first.shutdown()
        second.shutdown()


def test_unknown_paths_are_404_other_verbs_405_and_metrics_off_is_404(
    served: tuple[int, CollectorRegistry],
) -> None:
    port, _ = served
    assert _get(port, "/nope")[0] == 404
    assert _get(port, "/healthz/extra")[0] == 404
    status, _, headers = _get(port, "/healthz", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert _get(port, "/metrics", method="DELETE")[0] == 405
    head_status, head_body, _ = _get(port, "/metrics", method="HEAD")
    assert (head_status, head_body) == (200, b"")
    with SidecarHttp(healthy=lambda: True, metrics=False) as quiet:
        assert _get(quiet.port, "/metrics")[0] == 404
        assert _get(quiet.port, "/healthz")[0] == 204


def test_stop_frees_the_port_and_is_idempotent_and_start_twice_is_refused() -> None:
    http = SidecarHttp(healthy=lambda: True, metrics=False)
    with pytest.raises(RuntimeError, match="not started"):
        _ = http.port
    port = http.start()
    assert http.port == port
    with pytest.raises(RuntimeError, match="already started"):
        http.start()
    http.stop()
    http.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
    # The port is free again: it binds (a fixed-port restart works).
    with SidecarHttp(healthy=lambda: True, port=port, metrics=False) as again:
        assert again.port == port
        assert _get(port, "/v1.0/healthz")[0] == 204


def test_it_listens_on_loopback_by_default() -> None:
    with SidecarHttp(healthy=lambda: True, metrics=False) as http:
        assert http.host == "127.0.0.1"
        with socket.create_connection(("127.0.0.1", http.port), timeout=5):
            pass


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"healthy": 3}, TypeError, "healthy must be a callable"),
        ({"healthy": bool, "port": -1}, ValueError, "port must be an int in 0..65535"),
        ({"healthy": bool, "port": True}, ValueError, "port must be an int"),
        ({"healthy": bool, "host": ""}, ValueError, "host must be a non-empty"),
        ({"healthy": bool, "registry": object()}, TypeError, "CollectorRegistry or None"),
    ],
)
def test_bad_settings_are_refused_clearly(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        SidecarHttp(**kwargs)  # type: ignore[arg-type]


def test_no_request_is_logged(
    served: tuple[int, CollectorRegistry], capfd: pytest.CaptureFixture[str]
) -> None:
    port, _ = served
    _get(port, "/healthz?token=s3cret")
    _get(port, "/nope", method="POST")
    captured = capfd.readouterr()
    assert "s3cret" not in captured.err and "/nope" not in captured.err


def test_the_dapr_sdk_health_wait_passes_when_healthy_and_times_out_when_not(
    served: tuple[int, CollectorRegistry], health: _Health, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dapr.clients.health import DaprHealth
    from dapr.conf import settings

    port, _ = served
    monkeypatch.setattr(settings, "DAPR_HTTP_ENDPOINT", f"http://127.0.0.1:{port}", raising=False)
    monkeypatch.setattr(settings, "DAPR_API_TOKEN", "s3cret", raising=False)
    monkeypatch.setattr(settings, "DAPR_HEALTH_TIMEOUT", 0.2, raising=False)
    # Returns: the SDK's probe of /v1.0/healthz/outbound got 204.
    DaprHealth.wait_for_sidecar()  # type: ignore[no-untyped-call]
    health.ok = False
    with pytest.raises(TimeoutError):
        DaprHealth.wait_for_sidecar()  # type: ignore[no-untyped-call]
