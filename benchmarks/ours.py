"""Variants over this project's interceptors and Channel, each with and without tracing.

The policies are those issue 3 measures: app token + concurrency limit + header/trailer capture
(``AppToken(token)``, ``ConcurrencyLimit(n)`` with ``n`` the worker's calls in flight, so it is
exercised but never makes a caller wait, and ``Capture(into=Captured())``); ``+tracing`` puts
``Tracing`` outermost, on an OpenTelemetry SDK tracer provider that samples every call and hands
the finished spans to a ``BatchSpanProcessor`` (the SDK's production processor) whose exporter
drops them, and an SDK meter provider with an in-memory reader, so spans and metrics are really
made. ``+lean-tracing`` (``chain`` and ``channel`` families) is the same with the lean span path:
``TracingSpec(span_processor=BatchSpanProcessor(...))``, no tracer provider.

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
- ``grpc-sync-by-hand``/``grpc-aio-by-hand``: reference for ``chain``/``chain-aio``, a bare stub
  doing by hand the wire-visible part of the policies: it sends the target's metadata plus the app
  token and reads the headers and trailers (``with_call``; awaiting ``initial_metadata()`` and
  ``trailing_metadata()``); no limit. What is left between it and ``chain`` is our Python.
- ``grpc-sync-invoke``/``grpc-aio-invoke``: the Channel variants' baselines, bare grpcio stubs
  putting the same thing on the wire as ``invoke_method``: the same ``InvokeRequest`` bytes (built
  per call, as a stub user builds a request per call, since the Channel variants build their
  ``InvokeMethodRequest`` per call) and the same gRPC metadata (the target's metadata converted as
  ``invoke_method`` converts it, HTTP-header conversion on, then ``dapr-api-token``; the pairs are
  worked out once, at set-up). They read nothing but the reply. So a Channel variant's ratio is the
  cost of our client-side work alone: the request model, the metadata conversion, the token and
  limit policies, and capturing headers and trailers.
- ``grpc-sync-same-work``/``grpc-aio-same-work``: the same bare stubs doing grpcio's share of that
  work too (``with_call``, or awaiting the call, then reading the initial and trailing metadata):
  what capture costs inside grpcio, which no wrapper can avoid. The gap between these and
  ``channel``/``channel-aio`` is our Python.

Every import of project code happens inside the factories, and each variant lists the modules it
needs, so a missing or broken module only makes its variants unavailable (with the reason).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import grpc
import grpc.aio

from .target import Target, resolve_message_types
from .variants import (
    AsyncCaller,
    SyncCaller,
    Variant,
    VariantSettings,
    aio_unary,
    channel_options,
    sync_unary,
)

if TYPE_CHECKING:  # project code is imported inside the factories only
    from grpc_channel.interceptors import MetadataPairs

__all__ = ["AIO_CHANNEL_BASELINE", "AIO_SAME_WORK", "CHANNEL_BASELINE", "SAME_WORK", "variants"]

CHANNEL_BASELINE = "grpc-sync-invoke"
"""The sync Channel variants' baseline: a bare stub sending what ``invoke_method`` sends."""
AIO_CHANNEL_BASELINE = "grpc-aio-invoke"
"""The aio Channel variants' baseline."""
SAME_WORK = "grpc-sync-same-work"
"""The sync bare stub that also reads headers and trailers (grpcio's share of capture)."""
AIO_SAME_WORK = "grpc-aio-same-work"

# What each family imports (public modules only), checked before a variant is offered.
_POLICY_MODULES = ("grpc_channel.interceptors",)
_TRACING_MODULES = (
    "grpc_channel.interceptors",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.metrics",
)
_OPTION_MODULES = ("grpc_channel.call_options", "grpc_channel.dial_options")
_CHANNEL_MODULES = ("grpc_channel.channel", "grpc_channel.invoke", *_OPTION_MODULES)
_AIO_CHANNEL_MODULES = ("grpc_channel.aio", "grpc_channel.invoke", *_OPTION_MODULES)


#: Tracing modes of a variant: none, SDK tracer provider, lean span path.
Tracing = Literal["", "sdk", "lean"]
_SUFFIX: dict[str, str] = {"": "", "sdk": "+tracing", "lean": "+lean-tracing"}
_ABOUT: dict[str, str] = {"": "", "sdk": " + tracing", "lean": " + tracing (lean spans)"}


class _Telemetry:
    """SDK span and meter pipelines that do the work but keep nothing.

    ``mode="sdk"``: a ``TracerProvider`` with a ``BatchSpanProcessor``; ``mode="lean"``: the same
    ``BatchSpanProcessor`` given to ``TracingSpec(span_processor=...)``.
    """

    def __init__(self, mode: Tracing) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class DropSpans(SpanExporter):
            def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        self.processor = BatchSpanProcessor(DropSpans())
        self.tracer_provider: TracerProvider | None = None
        if mode == "sdk":
            self.tracer_provider = TracerProvider()
            self.tracer_provider.add_span_processor(self.processor)
        self.meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    def spec(self) -> Any:
        from grpc_channel.interceptors import TracingSpec

        if self.tracer_provider is not None:
            return TracingSpec(
                tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
            )
        return TracingSpec(span_processor=self.processor, meter_provider=self.meter_provider)

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        else:
            self.processor.shutdown()  # type: ignore[no-untyped-call]
        self.meter_provider.shutdown()


def _telemetry(mode: Tracing) -> _Telemetry | None:
    return _Telemetry(mode) if mode else None


def _chain(target: Target, settings: VariantSettings, telemetry: _Telemetry | None) -> Any:
    from grpc_channel.interceptors import AppToken, Capture, Captured, ConcurrencyLimit, compose

    policies: list[Any] = []
    if telemetry is not None:
        from grpc_channel.interceptors import Tracing

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


def _intercept(tracing: Tracing) -> Callable[[Target, VariantSettings], SyncCaller]:
    def factory(target: Target, settings: VariantSettings) -> SyncCaller:
        telemetry = _telemetry(tracing)
        chain = _chain(target, settings, telemetry)
        raw = grpc.insecure_channel(target.address, options=channel_options())
        channel = grpc.intercept_channel(raw, *chain.client_interceptors())
        return SyncCaller(sync_unary(channel, target), _closer(raw, telemetry))

    return factory


def _wrapped(tracing: Tracing) -> Callable[[Target, VariantSettings], SyncCaller]:
    def factory(target: Target, settings: VariantSettings) -> SyncCaller:
        telemetry = _telemetry(tracing)
        chain = _chain(target, settings, telemetry)
        raw = grpc.insecure_channel(target.address, options=channel_options())
        return SyncCaller(sync_unary(chain.wrap(raw), target), _closer(raw, telemetry))

    return factory


def _intercept_aio(tracing: Tracing) -> Callable[[Target, VariantSettings], Any]:
    async def factory(target: Target, settings: VariantSettings) -> AsyncCaller:
        telemetry = _telemetry(tracing)
        chain = _chain(target, settings, telemetry)
        channel = grpc.aio.insecure_channel(
            target.address, options=channel_options(), interceptors=chain.aio_client_interceptors()
        )
        return AsyncCaller(aio_unary(channel, target), _aio_closer(channel, telemetry))

    return factory


def _wrapped_aio(tracing: Tracing) -> Callable[[Target, VariantSettings], Any]:
    async def factory(target: Target, settings: VariantSettings) -> AsyncCaller:
        telemetry = _telemetry(tracing)
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
    from grpc_channel.call_options import timeout
    from grpc_channel.dial_options import (
        with_app_token,
        with_channel_args,
        with_max_concurrency,
        with_tracing,
    )
    from grpc_channel.invoke import InvokeMethodRequest

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


def _by_hand(target: Target, settings: VariantSettings) -> SyncCaller:
    channel = grpc.insecure_channel(target.address, options=channel_options())
    types = resolve_message_types(target)
    assert types is not None
    request_cls, response_cls = types
    stub = channel.unary_unary(
        target.method,
        request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString,
    )
    payload = request_cls.FromString(target.payload)
    pairs = (*target.metadata, ("dapr-api-token", settings.app_token))
    timeout = target.timeout

    def call() -> str:
        _, rpc = stub.with_call(payload, timeout=timeout, metadata=pairs)
        rpc.initial_metadata()
        rpc.trailing_metadata()
        return "OK"

    return SyncCaller(call, channel.close)


async def _by_hand_aio(target: Target, settings: VariantSettings) -> AsyncCaller:
    channel = grpc.aio.insecure_channel(target.address, options=channel_options())
    types = resolve_message_types(target)
    assert types is not None
    request_cls, response_cls = types
    stub = channel.unary_unary(
        target.method,
        request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString,
    )
    payload = request_cls.FromString(target.payload)
    pairs = (*target.metadata, ("dapr-api-token", settings.app_token))
    timeout = target.timeout

    async def call() -> str:
        rpc = stub(payload, timeout=timeout, metadata=pairs)
        await rpc
        await rpc.initial_metadata()
        await rpc.trailing_metadata()
        return "OK"

    return AsyncCaller(call, _aio_closer(channel, None))


def _needs_types(target: Target) -> str | None:
    if target.request_type is None:
        return "the target has no message types (raw-bytes payload)"
    return None


def _bare_invoke_parts(
    target: Target, settings: VariantSettings
) -> tuple[Callable[[], Any], MetadataPairs, Any, Any]:
    """What a bare OnInvoke stub needs to send exactly what ``invoke_method`` sends.

    Returns a per-call request builder (an ``InvokeRequest`` with the method, content type and data
    as ``Any``, as ``InvokeMethodRequest.to_invoke_request`` builds it), the metadata pairs (the
    target's metadata as internal metadata, converted once here by the same function
    ``invoke_method`` uses, then the app token the Channel variants are dialled with, in the order
    the Channel sends them) and the request/response classes.
    """
    from google.protobuf import any_pb2

    from grpc_channel.invoke import InvokeMethodRequest
    from grpc_channel.v1 import common_pb2

    spec = target.invoke
    assert spec is not None
    method, data, content_type = spec.method, spec.data, spec.content_type
    internal: dict[str, list[str]] = {}
    for key, value in target.metadata:
        internal.setdefault(key, []).append(value)
    converted = InvokeMethodRequest(method).with_metadata(internal).grpc_pairs(True)
    pairs = (*converted, ("dapr-api-token", settings.app_token))
    request_cls = common_pb2.InvokeRequest

    def request() -> Any:
        return request_cls(method=method, content_type=content_type, data=any_pb2.Any(value=data))

    return request, pairs, request_cls, common_pb2.InvokeResponse


def _bare_invoke(same_work: bool) -> Callable[[Target, VariantSettings], SyncCaller]:
    def factory(target: Target, settings: VariantSettings) -> SyncCaller:
        from grpc_channel.appcallback import ON_INVOKE

        request, pairs, request_cls, response_cls = _bare_invoke_parts(target, settings)
        channel = grpc.insecure_channel(target.address, options=channel_options())
        stub = channel.unary_unary(
            ON_INVOKE,
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        timeout = target.timeout

        if same_work:

            def call() -> str:
                _, rpc = stub.with_call(request(), timeout=timeout, metadata=pairs)
                rpc.initial_metadata()
                rpc.trailing_metadata()
                return "OK"

        else:

            def call() -> str:
                stub(request(), timeout=timeout, metadata=pairs)
                return "OK"

        return SyncCaller(call, channel.close)

    return factory


def _bare_invoke_aio(same_work: bool) -> Callable[[Target, VariantSettings], Any]:
    async def factory(target: Target, settings: VariantSettings) -> AsyncCaller:
        from grpc_channel.appcallback import ON_INVOKE

        request, pairs, request_cls, response_cls = _bare_invoke_parts(target, settings)
        channel = grpc.aio.insecure_channel(target.address, options=channel_options())
        stub = channel.unary_unary(
            ON_INVOKE,
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        timeout = target.timeout

        if same_work:

            async def call() -> str:
                rpc = stub(request(), timeout=timeout, metadata=pairs)
                await rpc
                await rpc.initial_metadata()
                await rpc.trailing_metadata()
                return "OK"

        else:

            async def call() -> str:
                await stub(request(), timeout=timeout, metadata=pairs)
                return "OK"

        return AsyncCaller(call, _aio_closer(channel, None))

    return factory


def _channel(tracing: Tracing) -> Callable[[Target, VariantSettings], SyncCaller]:
    def factory(target: Target, settings: VariantSettings) -> SyncCaller:
        from grpc_channel.channel import dial
        from grpc_channel.dial_options import with_insecure

        telemetry = _telemetry(tracing)
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


def _channel_aio(tracing: Tracing) -> Callable[[Target, VariantSettings], Any]:
    async def factory(target: Target, settings: VariantSettings) -> AsyncCaller:
        from grpc_channel.aio import dial
        from grpc_channel.dial_options import with_insecure

        telemetry = _telemetry(tracing)
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


_BARE_INVOKE = "bare grpcio stub, the same InvokeRequest and metadata as invoke_method"
_SAME_WORK = "the same, plus grpcio's share of capture (reads headers and trailers)"


def variants() -> list[Variant]:
    """Our variants, in the order the report lists them (registered by ``grpc_channel.bench``)."""
    out: list[Variant] = []
    about = "bare stub sending the token and reading headers and trailers by hand"
    out.append(
        Variant("grpc-sync-by-hand", f"{about} (sync)", sync_factory=_by_hand, applies=_needs_types)
    )
    out.append(
        Variant(
            "grpc-aio-by-hand", f"{about} (aio)", aio_factory=_by_hand_aio, applies=_needs_types
        )
    )
    for name, same_work in ((CHANNEL_BASELINE, False), (SAME_WORK, True)):
        out.append(
            Variant(
                name,
                f"{_SAME_WORK if same_work else _BARE_INVOKE} (sync)",
                sync_factory=_bare_invoke(same_work),
                requires=_CHANNEL_MODULES,
                applies=_needs_invoke,
            )
        )
    for name, same_work in ((AIO_CHANNEL_BASELINE, False), (AIO_SAME_WORK, True)):
        out.append(
            Variant(
                name,
                f"{_SAME_WORK if same_work else _BARE_INVOKE} (aio)",
                aio_factory=_bare_invoke_aio(same_work),
                requires=_CHANNEL_MODULES,
                applies=_needs_invoke,
            )
        )
    # Listed as the report shows them: sync family first, each without, then with tracing.
    for aio in (False, True):
        for family in _FAMILIES:
            for tracing in family.modes:
                out.append(family.variant(aio, tracing))
    return out


class _Family:
    """One of our variant families, in its sync and aio forms and its tracing modes."""

    def __init__(
        self,
        name: str,
        about: tuple[str, str],
        factories: tuple[Callable[[Tracing], Any], Callable[[Tracing], Any]],
        modules: tuple[tuple[str, ...], tuple[str, ...]],
        *,
        modes: tuple[Tracing, ...] = ("", "sdk", "lean"),
        baselines: tuple[str, str] | None = None,
    ) -> None:
        self.name = name
        self.about = about  # (sync, aio) descriptions, without the tracing part
        self.factories = factories  # (sync, aio) factory makers, given the tracing mode
        self.modules = modules
        self.modes = modes
        self.baselines = baselines  # OnInvoke families: (sync, aio) baseline, else None

    def variant(self, aio: bool, tracing: Tracing) -> Variant:
        side = int(aio)
        factory = self.factories[side](tracing)
        extra = _TRACING_MODULES if tracing else ()
        on_invoke: dict[str, Any] = (
            {}
            if self.baselines is None
            else {"applies": _needs_invoke, "baselines": (self.baselines[side],)}
        )
        return Variant(
            f"{self.name}{'-aio' if aio else ''}{_SUFFIX[tracing]}",
            self.about[side].format(plus=_ABOUT[tracing]),
            sync_factory=None if aio else factory,
            aio_factory=factory if aio else None,
            requires=(*self.modules[side], *extra),
            **on_invoke,
        )


_FAMILIES = (
    # The interceptor family is the reference; it needs no lean-tracing twin.
    _Family(
        "intercept",
        (
            f"{_POLICIES}{{plus}} as grpc.intercept_channel interceptors",
            f"{_POLICIES}{{plus}} as grpc.aio interceptors",
        ),
        (_intercept, _intercept_aio),
        (_POLICY_MODULES, _POLICY_MODULES),
        modes=("", "sdk"),
    ),
    _Family(
        "chain",
        (
            f"{_POLICIES}{{plus}} composed: chain.wrap(channel)",
            f"{_POLICIES}{{plus}} composed: chain.wrap_aio(channel)",
        ),
        (_wrapped, _wrapped_aio),
        (_POLICY_MODULES, _POLICY_MODULES),
    ),
    _Family(
        "channel",
        (f"Channel.{_INVOKE}{{plus}}", f"AsyncChannel.{_INVOKE}{{plus}}"),
        (_channel, _channel_aio),
        (_CHANNEL_MODULES, _AIO_CHANNEL_MODULES),
        baselines=(CHANNEL_BASELINE, AIO_CHANNEL_BASELINE),
    ),
)
