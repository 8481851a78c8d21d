"""Variants over this project's interceptors and Channel, each with and without tracing.

The policies are those issue 3 measures: app token + concurrency limit + header/trailer capture
(``AppToken(token)``, ``ConcurrencyLimit(n)`` with ``n`` the worker's calls in flight, so it is
exercised but never makes a caller wait, and ``Capture(into=Captured())``); ``+tracing`` puts
``Tracing`` outermost, on an OpenTelemetry SDK tracer provider that samples every call and drops
the finished spans (``SimpleSpanProcessor`` and an exporter that does nothing), and an SDK meter
provider with an in-memory reader, so spans and metrics are really made.

- ``intercept``/``intercept-aio``: the policies as grpcio interceptors
  (``grpc.intercept_channel(channel, *chain.client_interceptors())``, aio
  ``interceptors=chain.aio_client_interceptors()``).
- ``chain``/``chain-aio``: the composed chain wrapping the channel (``chain.wrap`` /
  ``chain.wrap_aio``).
- ``channel``/``channel-aio``: ``Channel.invoke_method`` / ``AsyncChannel.invoke_method`` dialled
  ``with_app_token``, ``with_max_concurrency(n)`` (and ``with_tracing``), on OnInvoke targets
  only. Each call builds a fresh ``InvokeMethodRequest`` (as an application does), carrying the
  target's metadata as internal metadata, so its conversion to gRPC metadata is paid on every call
  (a reused request would convert once); the response captures headers and trailers.

Every import of project code happens inside the factories, and each variant lists the modules it
needs, so a missing or broken module only makes its variants unavailable (with the reason).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc
import grpc.aio

from benchmarks.target import Target
from benchmarks.variants import (
    AsyncCaller,
    SyncCaller,
    Variant,
    VariantSettings,
    aio_unary,
    channel_options,
    register,
    sync_unary,
)

__all__: list[str] = []

_POLICY_MODULES = (
    "interceptors._chain",
    "interceptors._token",
    "interceptors._concurrency",
    "interceptors._capture",
)
_TRACING_MODULES = ("interceptors._tracing", "opentelemetry.sdk.trace", "opentelemetry.sdk.metrics")
_CHANNEL_MODULES = ("grpc_channel.channel", "grpc_channel.invoke", "grpc_channel.options")
_AIO_CHANNEL_MODULES = (
    "grpc_channel._async_channel",
    "grpc_channel.invoke",
    "grpc_channel.options",
)


class _Telemetry:
    """SDK tracer and meter providers that do the work but keep nothing."""

    def __init__(self) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
        from opentelemetry.sdk.trace.export import (
            SimpleSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class DropSpans(SpanExporter):
            def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(DropSpans()))
        self.meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    def spec(self) -> Any:
        from interceptors._tracing import TracingSpec

        return TracingSpec(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _chain(target: Target, settings: VariantSettings, telemetry: _Telemetry | None) -> Any:
    from interceptors._capture import Capture, Captured
    from interceptors._chain import compose
    from interceptors._concurrency import ConcurrencyLimit
    from interceptors._token import AppToken

    policies: list[Any] = []
    if telemetry is not None:
        from interceptors._tracing import Tracing

        policies.append(Tracing(telemetry.spec(), target=target.address))
    policies += [
        AppToken(settings.app_token),
        ConcurrencyLimit(settings.concurrency),
        Capture(into=Captured()),
    ]
    return compose(*policies)


def _closer(channel: grpc.Channel, telemetry: _Telemetry | None) -> Callable[[], None]:
    def close() -> None:
        channel.close()
        if telemetry is not None:
            telemetry.shutdown()

    return close


def _aio_closer(channel: grpc.aio.Channel, telemetry: _Telemetry | None) -> Callable[[], Any]:
    async def close() -> None:
        await channel.close(None)
        if telemetry is not None:
            telemetry.shutdown()

    return close


def _intercept(tracing: bool) -> Callable[[Target, VariantSettings], SyncCaller]:
    def factory(target: Target, settings: VariantSettings) -> SyncCaller:
        telemetry = _Telemetry() if tracing else None
        chain = _chain(target, settings, telemetry)
        raw = grpc.insecure_channel(target.address, options=channel_options())
        channel = grpc.intercept_channel(raw, *chain.client_interceptors())
        return SyncCaller(sync_unary(channel, target), _closer(raw, telemetry))

    return factory


def _wrapped(tracing: bool) -> Callable[[Target, VariantSettings], SyncCaller]:
    def factory(target: Target, settings: VariantSettings) -> SyncCaller:
        telemetry = _Telemetry() if tracing else None
        chain = _chain(target, settings, telemetry)
        raw = grpc.insecure_channel(target.address, options=channel_options())
        return SyncCaller(sync_unary(chain.wrap(raw), target), _closer(raw, telemetry))

    return factory


def _intercept_aio(tracing: bool) -> Callable[[Target, VariantSettings], Any]:
    async def factory(target: Target, settings: VariantSettings) -> AsyncCaller:
        telemetry = _Telemetry() if tracing else None
        chain = _chain(target, settings, telemetry)
        channel = grpc.aio.insecure_channel(
            target.address, options=channel_options(), interceptors=chain.aio_client_interceptors()
        )
        return AsyncCaller(aio_unary(channel, target), _aio_closer(channel, telemetry))

    return factory


def _wrapped_aio(tracing: bool) -> Callable[[Target, VariantSettings], Any]:
    async def factory(target: Target, settings: VariantSettings) -> AsyncCaller:
        telemetry = _Telemetry() if tracing else None
        chain = _chain(target, settings, telemetry)
        raw = grpc.aio.insecure_channel(target.address, options=channel_options())
        return AsyncCaller(aio_unary(chain.wrap_aio(raw), target), _aio_closer(raw, telemetry))

    return factory


def _needs_invoke(target: Target) -> str | None:
    if target.invoke is None:
        return "Channel.invoke_method calls OnInvoke: the target is not an OnInvoke target"
    return None


def _invoke_parts(
    target: Target, settings: VariantSettings, telemetry: _Telemetry | None
) -> tuple[Any, list[Any], list[Any]]:
    """A request builder, the dial options and the call options of the Channel variants."""
    from grpc_channel.invoke import InvokeMethodRequest
    from grpc_channel.options import (
        timeout,
        with_app_token,
        with_channel_args,
        with_max_concurrency,
        with_tracing,
    )

    spec = target.invoke
    assert spec is not None
    method, data, content_type = spec.method, spec.data, spec.content_type
    internal: dict[str, list[str]] = {}
    for key, value in target.metadata:
        internal.setdefault(key, []).append(value)

    def request() -> Any:
        built = InvokeMethodRequest(method).with_data(data, content_type)
        return built.with_metadata(internal) if internal else built

    dial_options: list[Any] = [
        with_app_token(settings.app_token),
        with_max_concurrency(settings.concurrency),
        with_channel_args(*channel_options()),
    ]
    if telemetry is not None:
        dial_options.append(with_tracing(telemetry.spec()))
    call_options: list[Any] = [] if target.timeout is None else [timeout(target.timeout)]
    return request, dial_options, call_options


def _channel(tracing: bool) -> Callable[[Target, VariantSettings], SyncCaller]:
    def factory(target: Target, settings: VariantSettings) -> SyncCaller:
        from grpc_channel.channel import dial
        from grpc_channel.options import with_insecure

        telemetry = _Telemetry() if tracing else None
        request, dial_options, call_options = _invoke_parts(target, settings, telemetry)
        channel = dial(target.address, with_insecure(), *dial_options)
        invoke = channel.invoke_method

        def call() -> str:
            status = invoke(request(), *call_options).status
            return "OK" if status.code == 0 else status.grpc_code.name

        def close() -> None:
            channel.close()
            if telemetry is not None:
                telemetry.shutdown()

        return SyncCaller(call, close)

    return factory


def _channel_aio(tracing: bool) -> Callable[[Target, VariantSettings], Any]:
    async def factory(target: Target, settings: VariantSettings) -> AsyncCaller:
        from grpc_channel._async_channel import dial
        from grpc_channel.options import with_insecure

        telemetry = _Telemetry() if tracing else None
        request, dial_options, call_options = _invoke_parts(target, settings, telemetry)
        channel = await dial(target.address, with_insecure(), *dial_options)
        invoke = channel.invoke_method

        async def call() -> str:
            status = (await invoke(request(), *call_options)).status
            return "OK" if status.code == 0 else status.grpc_code.name

        async def close() -> None:
            await channel.close()
            if telemetry is not None:
                telemetry.shutdown()

        return AsyncCaller(call, close)

    return factory


_POLICIES = "token + concurrency limit + capture"
_INVOKE = "invoke_method: token, limit, metadata conversion, capture"


def _register_all() -> None:
    sync: list[Variant] = []
    aio: list[Variant] = []
    for tracing in (False, True):
        suffix = "+tracing" if tracing else ""
        extra = _TRACING_MODULES if tracing else ()
        plus = " + tracing" if tracing else ""
        sync += [
            Variant(
                f"intercept{suffix}",
                f"{_POLICIES}{plus} as grpc.intercept_channel interceptors",
                sync_factory=_intercept(tracing),
                requires=(*_POLICY_MODULES, *extra),
            ),
            Variant(
                f"chain{suffix}",
                f"{_POLICIES}{plus} composed: chain.wrap(channel)",
                sync_factory=_wrapped(tracing),
                requires=(*_POLICY_MODULES, *extra),
            ),
            Variant(
                f"channel{suffix}",
                f"Channel.{_INVOKE}{plus}",
                sync_factory=_channel(tracing),
                requires=(*_CHANNEL_MODULES, *extra),
                applies=_needs_invoke,
            ),
        ]
        aio += [
            Variant(
                f"intercept-aio{suffix}",
                f"{_POLICIES}{plus} as grpc.aio interceptors",
                aio_factory=_intercept_aio(tracing),
                requires=(*_POLICY_MODULES, *extra),
            ),
            Variant(
                f"chain-aio{suffix}",
                f"{_POLICIES}{plus} composed: chain.wrap_aio(channel)",
                aio_factory=_wrapped_aio(tracing),
                requires=(*_POLICY_MODULES, *extra),
            ),
            Variant(
                f"channel-aio{suffix}",
                f"AsyncChannel.{_INVOKE}{plus}",
                aio_factory=_channel_aio(tracing),
                requires=(*_AIO_CHANNEL_MODULES, *extra),
                applies=_needs_invoke,
            ),
        ]
    # Listed as the report shows them: sync family first, each without then with tracing.
    for variant in sorted(sync, key=_order) + sorted(aio, key=_order):
        register(variant)


def _order(variant: Variant) -> tuple[int, bool]:
    family = variant.name.split("+")[0].replace("-aio", "")
    return ("intercept", "chain", "channel").index(family), variant.name.endswith("+tracing")


_register_all()
