"""The sidecar's HTTP side: health endpoints and a Prometheus scrape endpoint.

:class:`SidecarHttp` serves, on ``127.0.0.1`` by default:

- ``GET /healthz``, ``GET /v1.0/healthz`` and ``GET /v1.0/healthz/outbound``: 204 No Content
  when ``healthy()`` returns true, 503 otherwise (also when ``healthy()`` raises). The dapr
  SDK's ``DaprClient`` polls ``/v1.0/healthz/outbound`` on its HTTP port before it starts, so a
  sidecar serving this lets the SDK connect to it unchanged.
- ``GET /metrics``: the Prometheus text format of a ``prometheus_client`` registry (default: its
  global ``REGISTRY``; build a meter provider that feeds a registry of its own with
  :func:`prometheus_meter_provider`). 404 when built with ``metrics=False``.
- any other path: 404; any other verb on any path: 405 with ``Allow: GET, HEAD``
  (HEAD answers as GET without a body).

``/metrics`` needs the OpenTelemetry SDK and the Prometheus exporter (``prometheus_client``), which
come with the ``sidecar`` extra (``pip install 'grpc-channel[sidecar]'``); they are imported when
metrics are asked for, so the health endpoints work without them, and asking for metrics without
them raises :class:`~grpc_channel.interceptors.MissingExtraError` naming the extra.

It is the standard library's ``ThreadingHTTPServer`` in a daemon thread rather than a web
framework: four fixed GET routes need no routing, parsing or async server, and a new runtime
dependency for them would weigh on every user of the package. Requests are not logged (a
scraper every few seconds would flood stderr) and no header is ever logged, so a token sent
by a caller never reaches a log.
"""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from grpc_channel.interceptors import MissingExtraError
from grpc_channel.lifecycle import StartsOnEnter

if TYPE_CHECKING:
    # Optional (the ``sidecar`` extra): imported where metrics are served, see the module docs.
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from prometheus_client import CollectorRegistry

__all__ = ["HEALTH_PATHS", "METRICS_PATH", "SidecarHttp", "prometheus_meter_provider"]

_log = logging.getLogger(__name__)

#: The health paths: 204 when healthy, 503 when not.
HEALTH_PATHS: Final = frozenset({"/healthz", "/v1.0/healthz", "/v1.0/healthz/outbound"})
#: The Prometheus scrape path.
METRICS_PATH: Final = "/metrics"


def prometheus_meter_provider(
    resource: Resource | None = None,
) -> tuple[MeterProvider, CollectorRegistry]:
    """A meter provider whose metrics a Prometheus scrape of the returned registry shows.

    Each call makes a new ``CollectorRegistry`` (never prometheus_client's global one), so
    building several in one process (tests, several sidecars) neither fails with "Duplicated
    timeseries" nor mixes their metrics. Pass the registry to :class:`SidecarHttp` and the
    provider to :class:`~grpc_channel.sidecar.telemetry.SidecarTelemetry`; call the provider's
    ``shutdown()`` when done. ``resource`` defaults to the SDK's default resource. Without the
    ``sidecar`` extra installed, raises :class:`~grpc_channel.interceptors.MissingExtraError`.
    """
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import CollectorRegistry
    except ImportError as exc:
        raise _missing("prometheus_meter_provider()") from exc
    registry = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(registry=registry)
    if resource is None:
        return MeterProvider(metric_readers=[reader]), registry
    return MeterProvider(metric_readers=[reader], resource=resource), registry


def _missing(feature: str) -> MissingExtraError:
    return MissingExtraError(
        f"{feature} needs opentelemetry-sdk, opentelemetry-exporter-prometheus and "
        "prometheus_client, which are not installed; install them with "
        "pip install 'grpc-channel[sidecar]'"
    )


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # A restarted sidecar may rebind its fixed port while old connections sit in TIME_WAIT.
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        healthy: Callable[[], bool],
        registry: CollectorRegistry | None,
    ) -> None:
        super().__init__(address, _Handler)
        self.healthy = healthy
        self.registry = registry


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "grpc-channel-sidecar"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:
        """No per-request log lines (see the module docs)."""

    def _send(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
        self.send_response(status)
        if status == 405:
            self.send_header("Allow", "GET, HEAD")
        if status != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _answer(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in HEALTH_PATHS:
            try:
                ok = bool(self.server.healthy())
            except Exception:  # a broken check means not healthy, never a 500 or a crash
                _log.debug("sidecar http: healthy() raised", exc_info=True)
                ok = False
            self._send(204) if ok else self._send(503, b"not healthy\n")
        elif path == METRICS_PATH and self.server.registry is not None:
            # Imported when the registry was given or looked up, so this cannot fail here.
            from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

            try:
                body = generate_latest(self.server.registry)
            except Exception:
                _log.debug("sidecar http: metrics collection failed", exc_info=True)
                self._send(500, b"metrics collection failed\n")
                return
            self._send(200, body, CONTENT_TYPE_LATEST)
        else:
            self._send(404, b"not found\n")

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def _refuse(self) -> None:
        # The body of a refused request is not read; close so it is not taken for a request.
        self.close_connection = True
        self._send(405, b"method not allowed\n")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse


class SidecarHttp(StartsOnEnter):
    """Health and metrics over HTTP for a sidecar (see the module docs for the routes).

    ``healthy`` is called on each health request (from the server's threads, so it must be
    thread-safe and quick). ``host`` defaults to ``127.0.0.1`` (loopback only: expose it with
    care, the metrics name apps and methods); ``port`` 0 (the default) picks a free one.
    ``metrics`` (default True) serves ``/metrics`` from ``registry`` (default: prometheus_client's
    global ``REGISTRY``); with ``metrics=True`` and no ``prometheus_client`` installed, raises
    :class:`~grpc_channel.interceptors.MissingExtraError` naming the ``sidecar`` extra.
    :meth:`start` returns the bound port; :meth:`stop` closes the socket and joins the thread,
    and may be called more than once. Also a context manager.
    """

    def __init__(
        self,
        *,
        healthy: Callable[[], bool],
        host: str = "127.0.0.1",
        port: int = 0,
        metrics: bool = True,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if not callable(healthy):
            raise TypeError(f"healthy must be a callable returning bool, got {healthy!r}")
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a non-empty host name or address, got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int in 0..65535 (0: any free port), got {port!r}")
        self._registry: CollectorRegistry | None = None
        if metrics:
            try:
                from prometheus_client import REGISTRY, CollectorRegistry
                from prometheus_client.exposition import generate_latest  # noqa: F401
            except ImportError as exc:
                raise _missing("SidecarHttp(metrics=True)") from exc
            if registry is not None and not isinstance(registry, CollectorRegistry):
                raise TypeError(
                    f"registry must be a prometheus_client CollectorRegistry or None, got "
                    f"{type(registry).__name__}"
                )
            self._registry = registry or REGISTRY
        self._healthy = healthy
        self.host = host
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = f"port={self.port}" if self._server is not None else "stopped"
        return f"SidecarHttp({self.host!r}, {state})"

    @property
    def port(self) -> int:
        """The bound port; RuntimeError when not started."""
        if self._server is None:
            raise RuntimeError("SidecarHttp is not started: call start() first")
        return int(self._server.server_address[1])

    def start(self) -> int:
        """Bind and serve in a daemon thread; return the port. RuntimeError if already started;
        OSError if the address cannot be bound."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("SidecarHttp is already started")
            server = _Server((self.host, self._requested_port), self._healthy, self._registry)
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"sidecar-http:{server.server_address[1]}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
            return int(server.server_address[1])

    def stop(self) -> None:
        """Stop serving, close the socket and join the thread; a no-op when not started."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
