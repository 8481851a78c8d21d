"""The sidecar as a process: ``grpc-channel sidecar ...`` or ``python -m grpc_channel.sidecar``.

::

    grpc-channel sidecar --app-id ID --app-port N [--app-host 127.0.0.1]
        [--port 50001] [--http-port 3500] [--host 127.0.0.1]
        [--components DIR_OR_FILE] [--peers FILE] [--app-max-concurrency N]
        [--max-in-flight 1000]
        [--max-message-bytes 4194304] [--drain-timeout 30] [--app-health-probe-interval 5]
        [--log-level INFO]

It wires one :class:`~grpc_channel.sidecar.proxy.Sidecar` (the transparent proxy, listening on
``--host:--port``; 0 picks an ephemeral port) to the app at ``--app-host:--app-port``; the Dapr
API on the same port (:class:`~grpc_channel.sidecar.dapr_api.DaprApi`: ``InvokeService``,
``PublishEvent`` through the pub/sub runtime, ``GetMetadata`` naming the components, the
subscriptions and the app connection; other Dapr methods UNIMPLEMENTED); telemetry
(:class:`~grpc_channel.sidecar.telemetry.SidecarTelemetry` as the proxy's observer, its metrics
in a Prometheus registry of this sidecar's own, spans to the global tracer provider) and the HTTP
endpoints (:class:`~grpc_channel.sidecar.http.SidecarHttp` on ``--host:--http-port``:
``/healthz`` and ``/v1.0/healthz/outbound`` answer 204 while serving and 503 once stopping,
``/metrics`` is that registry). With ``--components``, a
:class:`~grpc_channel.pubsub.runtime.PubSubRuntime` delivers the components' topics to the app;
it starts in the background, so the sidecar serves (and answers ``/healthz``) before the app is
up.

- ``--peers``: a JSON/YAML file ``{app id: "host:port"}`` naming other apps' sidecars
  (:class:`~grpc_channel.sidecar.resolver.PeersResolver`; re-read when it changes). The
  ``GRPC_CHANNEL_PEERS`` environment variable adds entries.
- Spans: ``OTEL_TRACES_EXPORTER`` (OpenTelemetry's variable) chooses where the span of each
  proxied call goes: unset or ``none``, nowhere (the trace context is still passed on);
  ``console``, JSON on stderr; ``otlp``, the OTLP gRPC exporter (its package installed; the
  ``OTEL_EXPORTER_OTLP_*`` variables configure it). See :func:`traces_provider`.
- Tokens come from the environment only (:meth:`SidecarTokens.from_env
  <grpc_channel.sidecar.tokens.SidecarTokens.from_env>`): ``DAPR_API_TOKEN`` is demanded from
  callers and presented to peers, ``APP_API_TOKEN`` is presented to the app. Unset or empty: no
  token. Token values are never printed or logged.
- ``--app-max-concurrency`` (default: no limit) caps calls to the own app; ``--max-in-flight``
  (default 1000) caps proxied calls (one more is RESOURCE_EXHAUSTED); ``--max-message-bytes``
  (default 4 MiB) caps each message, both ways. Every method and call shape is proxied alike,
  frame by frame (:mod:`~grpc_channel.sidecar.frame_proxy`): nothing to declare.

Once serving, the process writes exactly one JSON line to stdout and flushes it::

    {"event": "ready", "app_id": "orders", "grpc_port": 50001, "http_port": 3500}

Everything else goes to stderr
as log lines. On SIGTERM or SIGINT it stops, within ``--drain-timeout`` seconds (default 30) in
all, and exits 0: first the pub/sub runtime (no new deliveries; those in flight finish, the rest
stay with the broker), then the proxy (no new calls; those in flight finish). The runtime goes
first because it delivers through the proxy's app channel, which the proxy closes when it stops;
proxied calls in flight run on meanwhile. A second signal changes nothing (the drain is already
bounded).

Exit status: 0 after a signal-driven stop; 2 for bad flags, a bad peers file or a bad token
(the message names the flag or variable, never a token's value); 1 when a port cannot be bound
or a broker fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import json
import logging
import os
import pathlib
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TextIO

from grpc_channel import process as flags
from grpc_channel.interceptors import MissingExtraError
from grpc_channel.pubsub.brokers import (
    BrokerArgumentError,
    BrokerError,
    Component,
    ComponentError,
    load_components,
)
from grpc_channel.pubsub.brokers.base import validate_group

from .dapr_api import AppConnection, ComponentInfo, DaprApi, sidecar_call_app
from .http import SidecarHttp, prometheus_meter_provider
from .proxy import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_MESSAGE_BYTES, Sidecar
from .resolver import PeersFileError, PeersResolver
from .telemetry import SidecarTelemetry
from .tokens import SidecarTokens

if TYPE_CHECKING:
    # The sidecar extra's packages: imported when the sidecar runs, so that the CLI (which
    # builds this module's parser) works without them.
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry

__all__ = [
    "DEFAULT_GRPC_PORT",
    "DEFAULT_HTTP_PORT",
    "READY_EVENT",
    "TRACES_EXPORTER_ENV",
    "SidecarServeConfig",
    "SidecarServeError",
    "build_parser",
    "main",
    "parse_args",
    "serve",
    "traces_provider",
]

_log = logging.getLogger("grpc_channel.sidecar.serve")

PROG: Final = "python -m grpc_channel.sidecar"
DEFAULT_GRPC_PORT: Final = 50001
"""Dapr's default gRPC API port."""
DEFAULT_HTTP_PORT: Final = 3500
"""Dapr's default HTTP port (here: health and metrics only)."""
DEFAULT_HOST: Final = "127.0.0.1"
READY_EVENT: Final = "ready"
"""The ``event`` of the one JSON line written to stdout once the sidecar serves."""
_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
_RUNTIME_RETRY_FIRST: Final = 1.0
_RUNTIME_RETRY_MAX: Final = 10.0


class SidecarServeError(flags.FlagError):
    """A flag or environment variable cannot be used; ``flag`` names it (the message is
    ``"<flag>: <why>"``, never a token's value)."""


@dataclass(frozen=True)
class SidecarServeConfig:
    """What the command line asked for (defaults: see the module docstring)."""

    app_id: str
    app_port: int
    app_host: str = DEFAULT_HOST
    port: int = DEFAULT_GRPC_PORT
    http_port: int = DEFAULT_HTTP_PORT
    host: str = DEFAULT_HOST
    components: pathlib.Path | None = None
    peers: pathlib.Path | None = None
    app_max_concurrency: int | None = None
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    drain_timeout: float = 30.0
    app_health_probe_interval: float = 5.0
    log_level: str = "INFO"


# -- flags -----------------------------------------------------------------------------------------


def _app_id(text: str) -> str:
    # The id travels as metadata (dapr-app-id) and names the brokers' consumer groups (NATS
    # durable names refuse '.'; so does Dapr in app ids): one rule, the brokers' own.
    try:
        return validate_group("sidecar", text)
    except BrokerArgumentError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not allowed; allowed: 1-100 characters of A-Z a-z 0-9 - _"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sidecar's flags to ``parser`` (shared by ``grpc-channel sidecar`` and
    ``python -m grpc_channel.sidecar``)."""
    parser.add_argument("--app-id", required=True, type=_app_id, help="this sidecar's app id")
    parser.add_argument(
        "--app-port", required=True, type=flags.app_port, help="the app's gRPC port"
    )
    parser.add_argument(
        "--app-host", default=DEFAULT_HOST, type=flags.host, help="default %(default)s"
    )
    parser.add_argument(
        "--port",
        default=DEFAULT_GRPC_PORT,
        type=flags.listen_port,
        help="gRPC port (proxy and Dapr API); 0: ephemeral; default %(default)s",
    )
    parser.add_argument(
        "--http-port",
        default=DEFAULT_HTTP_PORT,
        type=flags.listen_port,
        help="HTTP port for /healthz, /v1.0/healthz/outbound, /metrics; 0: ephemeral; "
        "default %(default)s",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, type=flags.host, help="default %(default)s")
    parser.add_argument(
        "--components",
        type=flags.existing_path,
        help="Dapr Component file or directory (pub/sub brokers)",
    )
    parser.add_argument(
        "--peers",
        type=flags.existing_path,
        help="JSON/YAML file {app id: host:port} of other sidecars",
    )
    parser.add_argument(
        "--app-max-concurrency", type=flags.positive_int, help="calls to the app at once (no limit)"
    )
    parser.add_argument(
        "--max-in-flight",
        type=flags.positive_int,
        default=DEFAULT_MAX_IN_FLIGHT,
        help="proxied calls at once; default %(default)s",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=flags.positive_int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        help="largest message; default %(default)s",
    )
    parser.add_argument(
        "--app-health-probe-interval",
        type=flags.seconds,
        default=5.0,
        help="with --components: seconds between health probes of the app (deliveries pause "
        "while it does not answer); default %(default)s",
    )
    parser.add_argument(
        "--drain-timeout",
        type=flags.seconds,
        default=30.0,
        help="seconds for calls and deliveries in flight on stop; default %(default)s",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=_LOG_LEVELS,
        default="INFO",
        help="default %(default)s",
    )


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> SidecarServeConfig:
    """The configuration of parsed flags (from :func:`add_arguments`)."""
    return SidecarServeConfig(
        app_id=args.app_id,
        app_port=args.app_port,
        app_host=args.app_host,
        port=args.port,
        http_port=args.http_port,
        host=args.host,
        components=args.components,
        peers=args.peers,
        app_max_concurrency=args.app_max_concurrency,
        max_in_flight=args.max_in_flight,
        max_message_bytes=args.max_message_bytes,
        drain_timeout=args.drain_timeout,
        app_health_probe_interval=args.app_health_probe_interval,
        log_level=args.log_level,
    )


def parse_args(argv: Sequence[str] | None = None, prog: str = PROG) -> SidecarServeConfig:
    """The configuration of a command line; bad flags print usage naming the flag and raise
    ``SystemExit(2)`` (argparse's convention)."""
    return config_from_args(build_parser(prog).parse_args(argv))


# -- running ---------------------------------------------------------------------------------------


@dataclass
class _Parts:
    sidecar: Sidecar
    brokers: Mapping[str, Any] = field(default_factory=dict)
    runtime: Any = None
    runtime_task: asyncio.Task[None] | None = None
    http: SidecarHttp | None = None
    http_port: int | None = None
    meter_provider: MeterProvider | None = None
    tracer_provider: Any = None  # the SDK provider of OTEL_TRACES_EXPORTER, when one is chosen
    serving: bool = False  # what /healthz reports: True from start until stop begins


TRACES_EXPORTER_ENV: Final = "OTEL_TRACES_EXPORTER"
_OTLP_MODULE: Final = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"


def traces_provider(app_id: str, environ: Mapping[str, str]) -> Any:
    """The tracer provider ``OTEL_TRACES_EXPORTER`` asks for (OpenTelemetry's variable): unset,
    empty or ``none``: None (spans go to the global provider, a no-op unless the embedding
    process set one); ``console``: spans as JSON on stderr (stdout holds the ready line);
    ``otlp``: the OTLP gRPC exporter, configured by the standard ``OTEL_EXPORTER_OTLP_*``
    variables (needs the ``opentelemetry-exporter-otlp-proto-grpc`` package). Anything else, or
    ``otlp`` without its package, raises :class:`SidecarServeError` naming the variable. Spans
    are batched; the provider is shut down (flushed) when the sidecar stops."""
    choice = environ.get(TRACES_EXPORTER_ENV, "").strip().lower()
    if choice in ("", "none"):
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise MissingExtraError(
            f"{TRACES_EXPORTER_ENV}={choice} needs opentelemetry-sdk, which is not installed; "
            "install it with pip install 'grpc-channel[sidecar]'"
        ) from None

    exporter: Any
    if choice == "console":
        exporter = ConsoleSpanExporter(out=sys.stderr)
    elif choice == "otlp":
        try:
            module = importlib.import_module(_OTLP_MODULE)
        except ImportError:
            raise SidecarServeError(
                TRACES_EXPORTER_ENV,
                "otlp needs the opentelemetry-exporter-otlp-proto-grpc package; install it",
            ) from None
        exporter = module.OTLPSpanExporter()
    else:
        raise SidecarServeError(
            TRACES_EXPORTER_ENV, f"{choice!r} is not supported; use none, console or otlp"
        )
    provider = TracerProvider(resource=Resource.create({"service.name": app_id}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _build_sidecar(
    config: SidecarServeConfig, tokens: SidecarTokens, tracer_provider: Any = None
) -> tuple[Sidecar, MeterProvider, CollectorRegistry]:
    try:
        resolver = PeersResolver(config.peers)
    except PeersFileError as exc:
        raise SidecarServeError("--peers", str(exc)) from None
    kwargs: dict[str, Any] = {
        "resolver": resolver,
        "app_address": flags.grpc_target(config.app_host, config.app_port),
        "api_token": tokens.api_token,
        "app_token": tokens.app_token,
        "peer_token": tokens.peer_token,
        "max_in_flight": config.max_in_flight,
        "max_message_bytes": config.max_message_bytes,
        "host": config.host,
    }
    # One registry per sidecar (never prometheus_client's global one): /metrics shows exactly
    # this sidecar's calls.
    try:
        from opentelemetry.sdk.resources import Resource
    except ImportError:
        raise MissingExtraError(
            "the sidecar's metrics need opentelemetry-sdk, which is not installed; install it "
            "with pip install 'grpc-channel[sidecar]'"
        ) from None
    meter_provider, registry = prometheus_meter_provider(
        Resource.create({"service.name": config.app_id})
    )
    telemetry = SidecarTelemetry(
        config.app_id, meter_provider=meter_provider, tracer_provider=tracer_provider
    )
    sidecar = Sidecar(
        config.app_id, app_max_concurrency=config.app_max_concurrency, observer=telemetry, **kwargs
    )
    return sidecar, meter_provider, registry


async def _start_runtime(runtime: Any, app_id: str) -> None:
    """Start the runtime in the background, retrying while the app cannot list its
    subscriptions (it may come up long after the sidecar). Any other failure is logged and
    leaves pub/sub off: the proxy keeps serving either way."""
    from grpc_channel.pubsub.runtime import SubscriptionFetchError

    delay = _RUNTIME_RETRY_FIRST
    while True:
        try:
            await runtime.start()
        except SubscriptionFetchError as exc:
            _log.warning("the app %r is not listing subscriptions yet (%s); retrying", app_id, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RUNTIME_RETRY_MAX)
            continue
        except Exception as exc:  # asyncio.CancelledError (stop) is not an Exception
            _log.error("the pub/sub runtime of %r could not start: %s", app_id, exc)
            return
        break
    _log.info("pub/sub runtime ready: %d subscriptions", len(runtime.subscriptions))


async def _start(
    config: SidecarServeConfig, parts: _Parts, tokens: SidecarTokens, registry: CollectorRegistry
) -> None:
    sidecar = parts.sidecar
    components: list[Component] = []
    if config.components is not None:
        parts.brokers, components = _load_brokers(config.components)
    runtime_box: list[Any] = []
    api = DaprApi(
        config.app_id,
        call_app=sidecar_call_app(sidecar),
        publisher=_LatePublisher(runtime_box),
        api_token=tokens.api_token,
        components=[ComponentInfo(c.name, c.type, c.version) for c in components],
        subscriptions=lambda: runtime_box[0].subscriptions if runtime_box else (),
        app_connection=AppConnection(config.app_port, config.app_host, config.app_max_concurrency),
    )
    sidecar.add_services(api.handler())
    await sidecar.start(config.port)
    if parts.brokers:
        from grpc_channel.pubsub.runtime import PubSubRuntime

        # The sidecar's own app channel: one app token and one app concurrency limit cover
        # proxied calls and deliveries alike.
        channel = sidecar.app_channel
        assert channel is not None  # started with an app address
        parts.runtime = PubSubRuntime(
            channel,
            dict(parts.brokers),
            app_id=config.app_id,
            health_interval=config.app_health_probe_interval,
        )
        runtime_box.append(parts.runtime)
        parts.runtime_task = asyncio.create_task(_start_runtime(parts.runtime, config.app_id))
    parts.serving = True
    parts.http = SidecarHttp(
        healthy=lambda: parts.serving, host=config.host, port=config.http_port, registry=registry
    )
    parts.http_port = parts.http.start()


def _load_brokers(path: pathlib.Path) -> tuple[dict[str, Any], list[Component]]:
    """``pubsub name -> broker`` from Dapr component files (brokers connect on first use), and
    the components themselves (for the Dapr API's ``GetMetadata``)."""
    try:
        components = load_components(path)
    except ComponentError as exc:
        raise SidecarServeError("--components", str(exc)) from None
    if not components:
        raise SidecarServeError("--components", f"{path} holds no pub/sub component (pubsub.*)")
    brokers = {name: component.create() for name, component in components.items()}
    return brokers, [components[name] for name in sorted(components)]


class _LatePublisher:
    """Forwards ``publish`` to the runtime once it exists (DaprApi is built before the server
    starts; the runtime after, because it shares the sidecar's app channel). Before that (the
    moment the server starts, with --components) a publish is refused as not ready yet, which
    the Dapr API answers UNAVAILABLE: the caller may retry."""

    def __init__(self, box: list[Any]) -> None:
        self._box = box

    async def publish(self, *args: Any, **kwargs: Any) -> str:
        if not self._box:
            from grpc_channel.pubsub.runtime import PubSubRuntimeError

            raise PubSubRuntimeError("the pub/sub runtime is not started yet; retry shortly")
        event_id: str = await self._box[0].publish(*args, **kwargs)
        return event_id


async def _stop(parts: _Parts, drain_timeout: float) -> None:
    """Drain pub/sub deliveries, then stop accepting calls and drain the proxied ones, all within
    ``drain_timeout`` seconds.

    The order is forced: the runtime delivers through the sidecar's app channel, and
    :meth:`Sidecar.stop` closes that channel (cancelling whatever still uses it) once its own
    calls are done. So the runtime drains first; proxied calls in flight keep running meanwhile,
    and the sidecar then gets what is left of the budget (at least until its calls end or the
    budget is spent). Without --components the sidecar stops at once.
    """
    parts.serving = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + drain_timeout
    if parts.runtime_task is not None and not parts.runtime_task.done():
        parts.runtime_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await parts.runtime_task
    if parts.runtime is not None:
        try:
            await parts.runtime.stop(drain_timeout)
        except Exception:  # the proxy must still stop
            _log.exception("stopping the pub/sub runtime failed")
    try:
        await parts.sidecar.stop(max(deadline - loop.time(), 0.0))
    except Exception:
        _log.exception("stopping the proxy failed")
    for broker in parts.brokers.values():
        try:
            await broker.close()
        except Exception:  # one broker failing to close must not keep the others open
            _log.exception("closing broker %r failed", getattr(broker, "kind", broker))
    if parts.http is not None:
        parts.http.stop()
    if parts.meter_provider is not None:
        parts.meter_provider.shutdown()
    if parts.tracer_provider is not None:
        parts.tracer_provider.shutdown()  # flushes the batched spans


async def serve(
    config: SidecarServeConfig,
    stop: asyncio.Event,
    announce: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Run the sidecar until ``stop`` is set, then drain and stop everything.

    ``announce`` receives the ready record (``event``, ``app_id``, ``grpc_port``, ``http_port``)
    once everything serves (default: one JSON line on stdout). Raises
    :class:`SidecarServeError` for unusable flags or tokens, ``OSError`` when a port cannot be
    bound.
    """
    try:
        tokens = SidecarTokens.from_env()
    except (TypeError, ValueError) as exc:
        raise SidecarServeError("DAPR_API_TOKEN/APP_API_TOKEN", str(exc)) from None
    tracer_provider = traces_provider(config.app_id, os.environ)
    sidecar, meter_provider, registry = _build_sidecar(config, tokens, tracer_provider)
    parts = _Parts(sidecar, meter_provider=meter_provider, tracer_provider=tracer_provider)
    try:
        await _start(config, parts, tokens, registry)
        record = {
            "event": READY_EVENT,
            "app_id": config.app_id,
            "grpc_port": sidecar.port,
            "http_port": parts.http_port,
        }
        (announce or _print_ready)(record)
        _log.info("sidecar %r serving on %s:%d", config.app_id, config.host, sidecar.port)
        await stop.wait()
        _log.info("stopping: draining calls and deliveries (at most %.1f s)", config.drain_timeout)
    finally:
        await _stop(parts, config.drain_timeout)


def _print_ready(record: dict[str, Any], stream: TextIO | None = None) -> None:
    out = sys.stdout if stream is None else stream
    out.write(json.dumps(record) + "\n")
    out.flush()


def run(config: SidecarServeConfig, prog: str = PROG) -> int:
    """Run a parsed configuration until SIGTERM/SIGINT; the exit status (module docstring)."""
    return flags.run_process(
        prog,
        functools.partial(serve, config),
        level=getattr(logging, config.log_level),
        log=_log,
        failures=[((BrokerError, OSError), "the sidecar failed"), (MissingExtraError, None)],
    )


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Parse ``argv``, run until SIGTERM/SIGINT, return the exit status (module docstring)."""
    return flags.main(functools.partial(parse_args, argv, prog), functools.partial(run, prog=prog))
