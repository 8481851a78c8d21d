"""Tracing and metrics for gRPC calls with OpenTelemetry: spans, W3C propagation, durations.

``Tracing(spec)`` is a client and server policy. It opens a CLIENT span for every outgoing call
and a SERVER span for every handled call, carries the W3C ``traceparent``/``tracestate`` headers
in the gRPC metadata, and records call durations and in-flight counts through the OpenTelemetry
metrics API.

What is recorded (OpenTelemetry RPC semantic conventions; the names below are the default, the
experimental conventions; ``OTEL_SEMCONV_STABILITY_OPT_IN=rpc`` switches to the stable ones and
``rpc/dup`` emits both, read once when a ``Tracing`` is built: see
:mod:`grpc_channel.interceptors._semconv` for the names per mode):

- span name ``"<package>.<Service>/<Method>"`` (the method path without its leading slash) unless
  ``TracingSpec.span_name`` gives another format;
- span attributes ``rpc.system="grpc"``, ``rpc.service``, ``rpc.method``, ``rpc.grpc.status_code``
  (the integer code), ``server.address``/``server.port`` on client spans when the target is known
  (``Tracing(target=...)``, else the target in the call's options: a channel from ``dial`` or a
  stub from ``wrap(stub, target=...)``),
  ``network.peer.address``/``network.peer.port`` on server spans, ``error.type`` on failed calls
  (the status code name, or the exception's type when a handler crashed; the exception is also
  recorded as a span event), plus ``TracingSpec.attributes``;
- status ERROR on a client span for every code but OK; on a server span only for UNKNOWN,
  DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE and DATA_LOSS (the other codes are the
  caller's fault, so the server did its job);
- metrics ``rpc.client.duration`` / ``rpc.server.duration`` (histograms, milliseconds; stable:
  ``rpc.client.call.duration`` / ``rpc.server.call.duration`` in seconds) with the attributes
  above and the status code, buckets from 50 µs to 10 s (``DURATION_BUCKETS``, as the
  instruments' advisory boundaries), and ``rpc.client.active_calls`` /
  ``rpc.server.active_calls`` (observable up-down counters of calls in flight). Durations are
  buffered and handed to the histogram when a metric reader collects (see ``_Side``), so they
  carry no exemplars. Message sizes are not recorded: policies do not see
  messages (the chain keeps that path free).

Metadata values are never span attributes: they may hold tokens.

Sampling is ParentBased(TraceIdRatioBased(rate)), decided by the policy itself so that the rate
holds whatever tracer provider is in use: a call with a parent span follows the parent's sampled
flag; a root call is sampled with probability ``sampling_rate``. A call that is not sampled still
gets a valid (non-recording) span context, so the ``traceparent`` it sends carries the trace id
with the sampled flag off, and everything downstream stays in one trace. The tracer provider's own
sampler still applies to sampled calls. Metrics are recorded for every call, sampled or not.
"""

from __future__ import annotations

import functools
import math
import random
import string
import threading
import time
import weakref
from array import array
from collections.abc import Callable, Iterable, Mapping, MutableSequence, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Final

import grpc
from opentelemetry import baggage, metrics, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import Getter, Setter, TextMapPropagator
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from ._bounded import BoundedCache
from ._extras import missing_extra
from ._lean_spans import LeanTracer, new_span_context
from ._policy import ClientCall, ClientPolicy, ServerCall, ServerPolicy
from ._semconv import DURATION_BUCKETS, DURATION_BUCKETS_MS, SemconvMode, semconv_mode

if TYPE_CHECKING:
    # The OpenTelemetry SDK is optional (the ``otel`` extra): it is imported only by the features
    # that need it (lean spans, ``resource``, ``sampler()``), never when this module is.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.sampling import Sampler

__all__ = [
    "DEFAULT_SPAN_NAME",
    "GRPC_METADATA_GETTER",
    "GRPC_METADATA_SETTER",
    "SERVER_ERROR_CODES",
    "GrpcMetadataGetter",
    "GrpcMetadataSetter",
    "Tracing",
    "TracingSpec",
    "TracingSpecError",
    "extract_trace_context",
    "inject_trace_context",
]

_INSTRUMENTATION_NAME: Final = "grpc_channel.interceptors"

#: The span name format used when ``TracingSpec.span_name`` is not given.
DEFAULT_SPAN_NAME: Final = "{full_method}"
_SPAN_NAME_FIELDS: Final = frozenset({"full_method", "service", "method"})

#: Codes for which a SERVER span is marked ERROR (semantic conventions for gRPC).
SERVER_ERROR_CODES: Final = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


_CLIENT_ERROR_CODES: Final = frozenset(set(grpc.StatusCode) - {grpc.StatusCode.OK})


class TracingSpecError(ValueError):
    """A ``TracingSpec`` field holds a value it does not allow; the message names field and rule."""


def _check_span_name(fmt: str) -> None:
    if not isinstance(fmt, str) or not fmt:
        raise TracingSpecError(
            f"span_name must be a non-empty format string, got {fmt!r}; "
            f"allowed fields: {', '.join(sorted(_SPAN_NAME_FIELDS))}"
        )
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise TracingSpecError(f"span_name {fmt!r} is not a valid format string: {exc}") from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in _SPAN_NAME_FIELDS or spec or conversion:
            raise TracingSpecError(
                f"span_name {fmt!r} uses {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}}; allowed fields are "
                f"{', '.join('{' + f + '}' for f in sorted(_SPAN_NAME_FIELDS))}, "
                "without conversions or format specs"
            )


@dataclass(frozen=True)
class TracingSpec:
    """What ``Tracing`` records and how; every field has a default and is validated on creation.

    - ``sampling_rate`` (default ``1.0``): probability in ``[0.0, 1.0]`` that a call with no parent
      span is sampled; calls with a parent follow the parent (ParentBased(TraceIdRatioBased)).
      ``0.0`` records no spans but still propagates trace context. Anything else (a bool, NaN, a
      string, a number outside the range) raises ``TracingSpecError``.
    - ``tracer_provider`` / ``meter_provider`` (default ``None``): the providers to use; ``None``
      means the global ones, looked up once when the policy is built.
    - ``propagator`` (default ``None``): the text-map propagator; ``None`` means the global one
      (W3C trace context + baggage unless ``OTEL_PROPAGATORS`` says otherwise).
    - ``span_name`` (default ``"{full_method}"``): a format string over ``{full_method}``
      (``pkg.Service/Method``), ``{service}`` (``pkg.Service``) and ``{method}`` (``Method``).
    - ``metrics`` (default ``True``): record the duration histograms and in-flight counters.
    - ``attributes`` (default empty): extra constant span attributes (for example an app id). Keys
      must be non-empty strings; values str, bool, int or float.
    - ``exclude_methods`` (default empty): full method paths (``/pkg.Service/Method``) the policy
      leaves alone: no span, no metrics, no propagation (health probes, say).
    - ``span_processor`` (default ``None``): the lean span path. Given an SDK span processor
      (``BatchSpanProcessor(exporter)``, say), the policy builds its spans itself and hands each,
      finished, to ``span_processor.on_end``; no tracer provider is used for spans, and
      ``on_start`` is not called. About a tenth of the SDK tracer's cost per span; see
      ``grpc_channel.interceptors._lean_spans`` for what differs. Sampling is then the policy's own
      rule alone (there is no provider sampler). You own the processor: shut it down (which flushes
      it) when you are done. Cannot be combined with ``tracer_provider``. Needs the OpenTelemetry
      SDK (the ``otel`` extra); without it, ``MissingExtraError`` (an ``ImportError``) names it.
    - ``resource`` (default ``None``): the resource of lean spans (only with ``span_processor``;
      a tracer provider carries its own). ``None`` means ``Resource.create()``, as a default
      ``TracerProvider`` would use.
    """

    sampling_rate: float = 1.0
    tracer_provider: trace.TracerProvider | None = None
    meter_provider: metrics.MeterProvider | None = None
    propagator: TextMapPropagator | None = None
    span_name: str = DEFAULT_SPAN_NAME
    metrics: bool = True
    attributes: Mapping[str, str | bool | int | float] = field(default_factory=dict)
    exclude_methods: frozenset[str] = frozenset()
    span_processor: SpanProcessor | None = None
    resource: Resource | None = None

    def __post_init__(self) -> None:
        rate: object = self.sampling_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise TracingSpecError(
                f"sampling_rate must be a number between 0.0 and 1.0 inclusive, "
                f"got {type(rate).__name__} {rate!r}"
            )
        if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
            raise TracingSpecError(
                f"sampling_rate must be a number between 0.0 and 1.0 inclusive, got {rate!r}"
            )
        object.__setattr__(self, "sampling_rate", float(rate))
        _check_span_name(self.span_name)
        flag: object = self.metrics
        if not isinstance(flag, bool):
            raise TracingSpecError(f"metrics must be a bool, got {type(flag).__name__}")
        if self.tracer_provider is not None and not isinstance(
            self.tracer_provider, trace.TracerProvider
        ):
            raise TracingSpecError(
                "tracer_provider must be an opentelemetry.trace.TracerProvider or None, "
                f"got {type(self.tracer_provider).__name__}"
            )
        if self.meter_provider is not None and not isinstance(
            self.meter_provider, metrics.MeterProvider
        ):
            raise TracingSpecError(
                "meter_provider must be an opentelemetry.metrics.MeterProvider or None, "
                f"got {type(self.meter_provider).__name__}"
            )
        if self.propagator is not None and not isinstance(self.propagator, TextMapPropagator):
            raise TracingSpecError(
                "propagator must be an opentelemetry TextMapPropagator or None, "
                f"got {type(self.propagator).__name__}"
            )
        attrs: dict[str, str | bool | int | float] = {}
        for key, value in dict(self.attributes).items():
            if not isinstance(key, str) or not key:
                raise TracingSpecError(f"attributes keys must be non-empty strings, got {key!r}")
            if not isinstance(value, str | bool | int | float):
                raise TracingSpecError(
                    f"attributes[{key!r}] must be str, bool, int or float, "
                    f"got {type(value).__name__}"
                )
            attrs[key] = value
        # A read-only copy: the spec is frozen, and later changes to the caller's dict must not
        # reach policies already built from it.
        object.__setattr__(self, "attributes", MappingProxyType(attrs))
        excluded: object = self.exclude_methods
        if isinstance(excluded, str) or not isinstance(excluded, Iterable):
            raise TracingSpecError(
                "exclude_methods must be a collection of method paths like '/pkg.Service/Method', "
                f"got {excluded!r}"
            )
        paths = frozenset(excluded)
        for path in paths:
            if not isinstance(path, str) or not path.startswith("/"):
                raise TracingSpecError(
                    f"exclude_methods entries must be method paths like '/pkg.Service/Method', "
                    f"got {path!r}"
                )
        object.__setattr__(self, "exclude_methods", paths)
        self._check_lean()

    def _check_lean(self) -> None:
        processor: object = self.span_processor
        resource: object = self.resource
        if processor is None and resource is None:
            return
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import SpanProcessor
        except ImportError as exc:
            raise missing_extra(
                "TracingSpec(span_processor=..., resource=...)", "opentelemetry-sdk", "otel"
            ) from exc
        if processor is not None:
            if not isinstance(processor, SpanProcessor):
                raise TracingSpecError(
                    "span_processor must be an opentelemetry.sdk.trace.SpanProcessor (for "
                    f"example BatchSpanProcessor(exporter)) or None, got {type(processor).__name__}"
                )
            if self.tracer_provider is not None:
                raise TracingSpecError(
                    "give tracer_provider or span_processor, not both: with span_processor the "
                    "policy builds its spans itself and uses no tracer provider"
                )
        if resource is not None:
            if not isinstance(resource, Resource):
                raise TracingSpecError(
                    "resource must be an opentelemetry.sdk.resources.Resource or None, "
                    f"got {type(resource).__name__}"
                )
            if processor is None:
                raise TracingSpecError(
                    "resource applies to lean spans only: set span_processor too, or give the "
                    "resource to your TracerProvider"
                )

    def __hash__(self) -> int:
        # The generated hash would fail on the attributes mapping; hash what it holds instead.
        return hash(
            (
                self.sampling_rate,
                self.tracer_provider,
                self.meter_provider,
                self.propagator,
                self.span_name,
                self.metrics,
                frozenset(self.attributes.items()),
                self.exclude_methods,
                self.span_processor,
                self.resource,
            )
        )

    def sampler(self) -> Sampler:
        """The equivalent SDK sampler, ``ParentBased(TraceIdRatioBased(sampling_rate))``.

        ``Tracing`` applies this rule itself; use this to give your own ``TracerProvider`` the same
        rule for spans that are not gRPC calls. Needs the OpenTelemetry SDK: without it, raises
        ``MissingExtraError`` (an ``ImportError``) naming the ``otel`` extra.
        """
        try:
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        except ImportError as exc:
            raise missing_extra("TracingSpec.sampler()", "opentelemetry-sdk", "otel") from exc
        return ParentBased(TraceIdRatioBased(self.sampling_rate))


# --- propagation over gRPC metadata ---------------------------------------------------------------


class GrpcMetadataGetter(Getter[Sequence[tuple[str, str | bytes]]]):
    """Reads text values from gRPC metadata pairs (``invocation_metadata()``, a list of tuples).

    Keys compare case-insensitively; binary (``-bin``) values are skipped.
    """

    def get(self, carrier: Sequence[tuple[str, str | bytes]], key: str) -> list[str] | None:
        key = key.lower()
        found = [v for k, v in carrier if k == key and isinstance(v, str)]
        return found or None

    def keys(self, carrier: Sequence[tuple[str, str | bytes]]) -> list[str]:
        return [k for k, _ in carrier]


class GrpcMetadataSetter(Setter[MutableSequence[tuple[str, str | bytes]]]):
    """Writes a text value into a mutable list of gRPC metadata pairs, replacing any earlier value
    of that key so a retried or re-injected call never carries two ``traceparent`` headers."""

    def set(self, carrier: MutableSequence[tuple[str, str | bytes]], key: str, value: str) -> None:
        key = key.lower()
        for i in range(len(carrier) - 1, -1, -1):
            if carrier[i][0] == key:
                del carrier[i]
        carrier.append((key, value))


GRPC_METADATA_GETTER: Final = GrpcMetadataGetter()
GRPC_METADATA_SETTER: Final = GrpcMetadataSetter()


def inject_trace_context(
    metadata: MutableSequence[tuple[str, str | bytes]],
    context: Context | None = None,
    propagator: TextMapPropagator | None = None,
) -> None:
    """Write the trace context of ``context`` (default: the current one) into ``metadata`` in place.

    ``propagator`` defaults to the global one. Nothing is written when there is no valid span.
    """
    (propagator or propagate.get_global_textmap()).inject(
        metadata, context=context, setter=GRPC_METADATA_SETTER
    )


def extract_trace_context(
    metadata: Sequence[tuple[str, str | bytes]] | None,
    context: Context | None = None,
    propagator: TextMapPropagator | None = None,
) -> Context:
    """The context carried by incoming ``metadata`` (``invocation_metadata()``), over ``context``
    (default: an empty one). Malformed or absent headers give ``context`` unchanged."""
    return (propagator or propagate.get_global_textmap()).extract(
        metadata or (), context=context, getter=GRPC_METADATA_GETTER
    )


# --- the per-method and per-call records ----------------------------------------------------------

_getrandbits: Final = random.getrandbits
#: The clock of call durations (``ClientCall.started`` / ``ServerCall.started`` are on it); a
#: module global so that a test can stand in a fake one.
_clock: Callable[[], float] = time.monotonic
#: Size of the low-64-bit trace id space TraceIdRatioBased compares against.
_TRACE_ID_SPACE: Final = 1 << 64


def _split_method(full_method: str) -> tuple[str, str]:
    """``"/pkg.Service/Method"`` -> ``("pkg.Service", "Method")``; a path without a service part
    gives ``("", path)`` so odd paths from generic handlers are still named."""
    path = full_method[1:] if full_method.startswith("/") else full_method
    service, sep, method = path.rpartition("/")
    if not sep:
        return "", path
    return service, method


def _parse_peer(peer: str) -> tuple[str, int | None]:
    """grpc peer strings (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``, ``unix:/tmp/s``) -> address,
    port. Unknown shapes give the string itself and no port."""
    kind, sep, rest = peer.partition(":")
    if not sep:
        return peer, None
    if kind == "unix" or kind == "unix-abstract":
        return rest, None
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return rest, None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


#: What a duration histogram needs per recording: its ``record``, the factor from seconds to its
#: unit, and the attribute set. A call's final code picks a tuple of these (one per histogram).
_Emission = tuple[
    Callable[[float, Mapping[str, AttributeValue]], None], float, Mapping[str, AttributeValue]
]


class _MethodInfo:
    """Everything about one method that does not change per call, computed once and cached."""

    __slots__ = (
        "active",
        "by_code",
        "error_codes",
        "evicted",
        "instruments",
        "method",
        "metric_attrs",
        "mode",
        "old_attrs",
        "span_attrs",
        "span_name",
        "stable_attrs",
        "traced",
    )

    def __init__(
        self,
        full_method: str,
        spec: TracingSpec,
        side_attrs: Mapping[str, AttributeValue],
        side: _Side,
    ) -> None:
        self.method = full_method
        self.traced = full_method not in spec.exclude_methods
        mode = self.mode = side.mode
        self.instruments = side.instruments
        self.error_codes = side.error_codes
        service, method = _split_method(full_method)
        path = full_method.lstrip("/")
        self.span_name = spec.span_name.format(full_method=path, service=service, method=method)
        # Only the sets the mode needs are built: a record is made for every new method path.
        old: dict[str, AttributeValue] = {}
        if mode.old:
            old["rpc.system"] = "grpc"
            if service:
                old["rpc.service"] = service
            old["rpc.method"] = method
        stable: dict[str, AttributeValue] = {}
        if mode.stable:
            stable["rpc.system.name"] = "grpc"
            stable["rpc.method"] = path
        # One attribute set for spans and the in-flight counter: under rpc/dup the union, where
        # the stable ``rpc.method`` (the full method) overrides the old one (see ``_semconv``).
        metric_attrs: Mapping[str, AttributeValue] = {**old, **stable, **side_attrs}
        self.metric_attrs = metric_attrs
        # The histograms' sets (each convention its own): the same as above unless under rpc/dup.
        dup = mode is SemconvMode.DUP
        self.old_attrs: Mapping[str, AttributeValue] = (
            {**old, **side_attrs} if dup else metric_attrs
        )
        self.stable_attrs: Mapping[str, AttributeValue] = (
            {**stable, **side_attrs} if dup else metric_attrs
        )
        # The status code starts as OK and is overwritten only when a call fails: a write at the
        # end (lock + clean) would cost every successful call; the SDK copies the dict.
        # Read-only: lean spans share it until something is set on them.
        span_attrs = {**spec.attributes, **metric_attrs}
        if mode.old:
            span_attrs["rpc.grpc.status_code"] = 0
        if mode.stable:
            span_attrs["rpc.response.status_code"] = "OK"
        self.span_attrs: Mapping[str, AttributeValue] = MappingProxyType(span_attrs)
        # Histogram recordings per final code, built on first use: recording then hashes dicts
        # we already have instead of building them per call.
        self.by_code: dict[grpc.StatusCode, tuple[_Emission, ...]] = {}
        # Calls of this method in flight (guarded by the owning side's lock), and whether the
        # record has left its side's cache (then calls count in the side's ``orphans`` instead).
        self.active = 0
        self.evicted = False

    def _code_attrs(self, stable: bool, code: grpc.StatusCode) -> Mapping[str, AttributeValue]:
        if not stable:
            return {**self.old_attrs, "rpc.grpc.status_code": code.value[0]}
        if code in self.error_codes:
            return {
                **self.stable_attrs,
                "rpc.response.status_code": code.name,
                "error.type": code.name,
            }
        return {**self.stable_attrs, "rpc.response.status_code": code.name}

    def emissions(self, code: grpc.StatusCode) -> tuple[_Emission, ...]:
        """The histogram recordings of a call of this method that ended with ``code``."""
        found = self.by_code.get(code)
        if found is None:
            found = self.by_code[code] = tuple(
                (record, scale, self._code_attrs(stable, code))
                for record, scale, stable in self.instruments
            )
        return found


#: Durations buffered per side between collections; beyond it each call records its own. They
#: are kept as C doubles (2 MiB at most per side): 262,144 calls cover a 60 s export interval
#: (the SDK's default) at over 4,000 calls per second.
_BUFFER_MAX: Final = 262144

#: Attribute sets (a method and a final code) with buffered durations per side, as a multiple of
#: ``BoundedCache.default_capacity``: each set costs far more than a double, and any path a
#: caller sends makes new ones. A duration with a set beyond it is recorded inline.
_PENDING_SETS_PER_METHOD: Final = 4


class _Collector:
    """The instruments of one side (client or server) for one meter provider, shared by every
    ``Tracing`` on that provider: the SDK hands back the first instrument of a name and drops
    the callbacks of later ones, so one callback must serve all of them."""

    __slots__ = ("__weakref__", "dirty", "histograms", "lock", "meter", "side", "sides")

    def __init__(self, meter: metrics.Meter, side: str) -> None:
        # Live sides, for their in-flight counts; a policy that is dropped stops counting.
        self.sides: weakref.WeakSet[_Side] = weakref.WeakSet()
        # Sides holding buffered durations, kept alive until the next collection takes them, so
        # durations of a policy dropped right after its calls are not lost.
        self.dirty: set[_Side] = set()
        self.lock = threading.Lock()
        self.meter = meter
        self.side = side
        # Duration histograms by convention (False: old, ms; True: stable, s), made on first use
        # so that a provider only shows the instruments of the conventions in use.
        self.histograms: dict[bool, metrics.Histogram] = {}
        direction = "outgoing" if side == "client" else "incoming"
        meter.create_observable_up_down_counter(
            f"rpc.{side}.active_calls",
            callbacks=[self._collect],
            unit="{call}",
            description=f"{direction.capitalize()} gRPC calls in flight",
        )

    def instruments(
        self, mode: SemconvMode
    ) -> tuple[tuple[Callable[[float, Mapping[str, AttributeValue]], None], float, bool], ...]:
        """``(record, seconds-to-unit factor, stable)`` per duration histogram ``mode`` emits."""
        out = []
        for stable in (False, True):
            if not (mode.stable if stable else mode.old):
                continue
            with self.lock:
                histogram = self.histograms.get(stable)
                if histogram is None:
                    histogram = self.histograms[stable] = self._histogram(stable)
            out.append((histogram.record, 1.0 if stable else 1000.0, stable))
        return tuple(out)

    def _histogram(self, stable: bool) -> metrics.Histogram:
        side = self.side
        direction = "outgoing" if side == "client" else "incoming"
        description = f"Duration of {direction} gRPC calls, from start to final status"
        if stable:
            return self.meter.create_histogram(
                f"rpc.{side}.call.duration",
                unit="s",
                description=description,
                explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
            )
        return self.meter.create_histogram(
            f"rpc.{side}.duration",
            unit="ms",
            description=description,
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_MS),
        )

    def _collect(self, options: CallbackOptions) -> Iterable[Observation]:
        totals: dict[
            frozenset[tuple[str, AttributeValue]], tuple[Mapping[str, AttributeValue], int]
        ]
        totals = {}
        with self.lock:
            dirty, self.dirty = self.dirty, set()
        for side in dirty:
            side.flush()
        for side in list(self.sides):
            # Under the side's lock, no count moves between a record and ``orphans`` (eviction
            # moves them under it too). list() of a dict view runs in C without releasing the
            # GIL: safe while calls add methods.
            with side.lock:
                counts = [
                    (info.metric_attrs, info.active)
                    for info in list(side.methods.values())
                    if info.traced
                ]
                counts.extend((o.attrs, o.count) for o in side.orphans.values())
            for attrs, active in counts:
                key = frozenset(attrs.items())
                seen = totals.get(key)
                totals[key] = (attrs, active + (seen[1] if seen else 0))
        return [Observation(count, attrs) for attrs, count in totals.values()]


_COLLECTORS: weakref.WeakKeyDictionary[object, dict[str, _Collector]] = weakref.WeakKeyDictionary()
_COLLECTORS_LOCK = threading.Lock()


def _collector(provider: metrics.MeterProvider, side: str) -> _Collector:
    with _COLLECTORS_LOCK:
        by_side = _COLLECTORS.get(provider)
        if by_side is None:
            by_side = {}
            _COLLECTORS[provider] = by_side
        found = by_side.get(side)
        if found is None:
            found = _Collector(provider.get_meter(_INSTRUMENTATION_NAME), side)
            by_side[side] = found
        return found


class _Orphaned:
    """In-flight calls of one method that began on a method record evicted since (their finish
    may use a newer record of the same method). The side's lock guards ``count``."""

    __slots__ = ("attrs", "count")

    def __init__(self, attrs: Mapping[str, AttributeValue]) -> None:
        self.attrs = attrs
        self.count = 0


def _orphan(orphans: dict[str, _Orphaned], info: _MethodInfo, delta: int) -> None:
    """Count ``delta`` calls of an evicted record's method (side lock held); an entry goes when
    its count is back to zero, so ``orphans`` only holds methods with calls unaccounted for."""
    entry = orphans.get(info.method)
    if entry is None:
        entry = orphans[info.method] = _Orphaned(info.metric_attrs)
    entry.count += delta
    if not entry.count:
        del orphans[info.method]


def _retirer(
    lock: threading.Lock, orphans: dict[str, _Orphaned]
) -> Callable[[str, _MethodInfo], None]:
    """The side's ``on_evict``: moves an evicted record's in-flight count to ``orphans``. A
    closure over the lock and dict only, not the side: no reference cycle keeps a side alive."""

    def retire(method: str, info: _MethodInfo) -> None:
        with lock:
            info.evicted = True
            if info.active:
                _orphan(orphans, info, info.active)
                info.active = 0

    return retire


class _Side:
    """One side (client or server) of a ``Tracing``: its method records and metric bookkeeping.

    Why the bookkeeping: each SDK ``add``/``record`` cleans and hashes its attributes (12-20 µs
    here), which would be most of the policy's cost per call. So in-flight counts are plain
    integers under a lock, reported by an observable up-down counter, and durations are buffered
    and handed to the histogram when a metric reader collects (observable callbacks run first in
    every SDK collection, so the buffered values land in that collection). Once ``_BUFFER_MAX``
    are pending (a provider that never collects, like the API's no-op one, or a long export
    interval under heavy traffic), each call records its own duration inline, as it would
    without the buffer: the buffer stays bounded and no single call pays for a backlog. So do
    durations of an attribute set beyond ``pending_sets`` distinct ones (new method paths).

    Method records live in a :class:`~grpc_channel.interceptors._bounded.BoundedCache` (any path a
    caller sends gets one). A call may start on a record that is evicted before it finishes, and
    finish on a newer one: the in-flight count stays exact because an evicted record's count, and
    every later change a call makes through it, goes to ``orphans`` (per method), which the
    collector adds in. So the total per method is always the live record's count plus its orphans.
    """

    __slots__ = (
        "__weakref__",
        "cache",
        "collector",
        "count",
        "error_codes",
        "instruments",
        "lock",
        "marked",
        "methods",
        "mode",
        "orphans",
        "pending",
        "pending_sets",
    )

    def __init__(
        self, provider: metrics.MeterProvider | None, side: str, mode: SemconvMode
    ) -> None:
        self.lock = threading.Lock()
        self.mode = mode
        # Codes that mark a call failed (``error.type`` on stable histograms): every code but OK
        # for a client, SERVER_ERROR_CODES for a server (as for span status).
        self.error_codes: frozenset[grpc.StatusCode] = (
            _CLIENT_ERROR_CODES if side == "client" else SERVER_ERROR_CODES
        )
        self.orphans: dict[str, _Orphaned] = {}
        # Buffered durations (seconds) per final-code recording tuple, keyed by the tuple's id:
        # each entry holds its tuple, so the id cannot be reused while the entry lives.
        self.pending: dict[int, tuple[tuple[_Emission, ...], array[float]]] = {}
        self.pending_sets = _PENDING_SETS_PER_METHOD * BoundedCache.default_capacity
        self.count = 0  # durations in ``pending``
        self.collector: _Collector | None = None
        # True while this side is in its collector's ``dirty`` set (guarded by ``lock``).
        self.marked = False
        self.instruments: tuple[
            tuple[Callable[[float, Mapping[str, AttributeValue]], None], float, bool], ...
        ] = ()
        if provider is not None:
            self.collector = _collector(provider, side)
            self.collector.sides.add(self)
            self.instruments = self.collector.instruments(mode)
        # Counts only matter with a collector; without one nothing needs to know of evictions.
        retire = _retirer(self.lock, self.orphans) if self.collector is not None else None
        self.cache: BoundedCache[str, _MethodInfo] = BoundedCache(on_evict=retire)
        # Hits read the plain dict; inserts go through ``cache``.
        self.methods = self.cache.data

    def flush(self) -> None:
        """Hand the buffered durations to the histogram."""
        with self.lock:
            pending, self.pending = self.pending, {}
            self.count = 0
            self.marked = False
        for emissions, values in pending.values():
            for record, scale, attrs in emissions:
                for value in values:
                    record(value * scale, attrs)

    def begin(self, info: _MethodInfo) -> None:
        if self.collector is not None:
            with self.lock:
                if info.evicted:
                    _orphan(self.orphans, info, 1)
                else:
                    info.active += 1

    def end(self, info: _MethodInfo, code: grpc.StatusCode, started: float) -> None:
        collector = self.collector
        if collector is None:
            return
        value = _clock() - started
        emissions = info.emissions(code)
        with self.lock:
            if info.evicted:
                _orphan(self.orphans, info, -1)
            else:
                info.active -= 1
            if self.count < _BUFFER_MAX:
                slot = self.pending.get(id(emissions))
                if slot is None and len(self.pending) < self.pending_sets:
                    slot = self.pending[id(emissions)] = (emissions, array("d"))
                if slot is not None:
                    slot[1].append(value)
                    self.count += 1
                    if not self.marked:
                        self.marked = True
                        with collector.lock:
                            collector.dirty.add(self)
                    return
        for record, scale, attrs in emissions:
            record(value * scale, attrs)


class Tracing(ClientPolicy, ServerPolicy):
    """OpenTelemetry spans, W3C propagation and RPC metrics, as a client and a server policy.

    ``Tracing(spec=None, *, target=None)``: ``spec`` defaults to ``TracingSpec()`` (sample every
    root call, global providers and propagator). ``target`` is the channel target (``host:port``)
    for ``server.address``/``server.port`` on client spans (and client metrics); grpcio does not
    tell interceptors the target, so give it when you wrap a raw channel
    (``compose(Tracing(spec, target=t)).wrap(grpc.insecure_channel(t))``). Without it, a span
    takes the target from the call's options when there is one (``dial`` passes its target;
    ``wrap(stub, target=...)`` too), and is left without those attributes otherwise.
    ``mode`` is the :class:`SemconvMode` read from ``OTEL_SEMCONV_STABILITY_OPT_IN`` here, once.

    Use it in a chain (``compose(..., Tracing(spec), ...)``) or alone:
    ``Tracing(spec).client_interceptor()`` / ``.aio_client_interceptors()`` (a list) /
    ``.server_interceptor()`` / ``.aio_server_interceptor()`` / ``.wrap(channel)``.
    Put it outermost to time and trace the whole call including waits in inner policies;
    inside a ``Retry`` it traces each attempt. One ``Tracing`` per chain (it owns ``call.span``).

    Client side: a CLIENT span child of the caller's current span; its context is written into the
    outgoing metadata, but the span is not made current (nothing of the caller's runs under it,
    and attach/detach would cost on every call). Server side: a SERVER span child of the context
    in the incoming metadata, current while the handler runs, so calls made from the handler
    continue the trace. An exception raised by a handler is recorded as a span event (type,
    message, stack trace) on the server span.
    """

    __slots__ = (
        "_client",
        "_extract",
        "_inject",
        "_lean",
        "_rate",
        "_ratio_bound",
        "_server",
        "_tracer",
        "_w3c",
        "mode",
        "spec",
        "target",
    )

    #: Asks the chain to run each sync server call in its own ``contextvars`` copy (see
    #: ``grpc_channel.interceptors._server``), so the span attached in ``server_start`` cannot leak.
    needs_context: ClassVar[bool] = True

    def __init__(self, spec: TracingSpec | None = None, *, target: str | None = None) -> None:
        if spec is None:
            spec = TracingSpec()
        elif not isinstance(spec, TracingSpec):
            raise TracingSpecError(f"spec must be a TracingSpec or None, got {type(spec).__name__}")
        if target is not None and (not isinstance(target, str) or not target):
            raise TracingSpecError(
                f"target must be a non-empty 'host:port' string or None, got {target!r}"
            )
        self.spec = spec
        self.target = target
        self._rate = spec.sampling_rate
        # TraceIdRatioBased samples when the low 64 bits of the trace id are below rate * 2**64
        # (rounded); computed here so that sampling needs no SDK.
        self._ratio_bound = round(spec.sampling_rate * _TRACE_ID_SPACE)
        # The lean path (spec.span_processor) replaces the tracer for sampled spans.
        self._lean: LeanTracer | None = None
        if spec.span_processor is not None:
            self._lean = LeanTracer(spec.span_processor, spec.resource, _INSTRUMENTATION_NAME)
        provider = spec.tracer_provider or trace.get_tracer_provider()
        self._tracer = provider.get_tracer(_INSTRUMENTATION_NAME)
        propagator = spec.propagator or propagate.get_global_textmap()
        self._inject = propagator.inject
        self._extract = propagator.extract
        self._w3c = _w3c_mode(propagator)
        meter_provider = (
            (spec.meter_provider or metrics.get_meter_provider()) if spec.metrics else None
        )
        # Read once: the conventions of a policy never change under it (see ``_semconv``).
        self.mode = semconv_mode()
        self._client = _Side(meter_provider, "client", self.mode)
        self._server = _Side(meter_provider, "server", self.mode)

    def __repr__(self) -> str:
        return f"Tracing(sampling_rate={self._rate}, target={self.target!r})"

    # -- sampling ----------------------------------------------------------------------------------

    def _sampled(self, parent: SpanContext) -> bool:
        # ParentBased: a parent (local or remote) decides for its children.
        if parent.is_valid:
            return parent.trace_flags.sampled
        rate = self._rate
        if rate >= 1.0:
            return True
        if rate <= 0.0:
            return False
        # TraceIdRatioBased over a random 64-bit draw: the same probability the SDK gives a root
        # with a random trace id. The trace id itself is then made by the tracer.
        return _getrandbits(64) < self._ratio_bound

    # -- method records ----------------------------------------------------------------------------

    def _client_info(self, full_method: str) -> _MethodInfo:
        side = _target_attributes(self.target)
        # setdefault is atomic: threads racing on a method's first call share one record.
        return self._client.cache.setdefault(
            full_method, _MethodInfo(full_method, self.spec, side, self._client)
        )

    def _server_info(self, full_method: str) -> _MethodInfo:
        return self._server.cache.setdefault(
            full_method, _MethodInfo(full_method, self.spec, {}, self._server)
        )

    # -- client ------------------------------------------------------------------------------------

    def client_start(self, call: ClientCall) -> None:
        info = self._client.methods.get(call.method) or self._client_info(call.method)
        if not info.traced:
            return
        parent_ctx = otel_context.get_current()
        parent = trace.get_current_span(parent_ctx).get_span_context()
        span: Span
        if self._sampled(parent):
            attrs = info.span_attrs
            if self.target is None and call.options is not None:
                # No target given to the policy: a channel dialled by us, or a stub wrapped with
                # ``target=``, still names it in the call's options record.
                known = _target_attributes(getattr(call.options, "target", None))
                if known:
                    attrs = {**attrs, **known}
            lean = self._lean
            if lean is not None:
                span = lean.start(info.span_name, parent, SpanKind.CLIENT, attrs)
            else:
                span = self._tracer.start_span(info.span_name, parent_ctx, SpanKind.CLIENT, attrs)
        else:
            span = _unsampled_span(parent)
        call.span = span
        w3c = self._w3c
        if w3c is _W3C_ONLY or (w3c is _W3C_AND_BAGGAGE and not baggage.get_all(parent_ctx)):
            # What TraceContextTextMapPropagator.inject writes, without building a context
            # and going through the composite propagator.
            sc = span.get_span_context()
            if sc.is_valid:  # a no-op tracer's span has nothing to carry
                md = call.metadata
                GRPC_METADATA_SETTER.set(
                    md,
                    "traceparent",
                    f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{sc.trace_flags:02x}",
                )
                if sc.trace_state:
                    GRPC_METADATA_SETTER.set(md, "tracestate", sc.trace_state.to_header())
        else:
            self._inject(
                call.metadata, trace.set_span_in_context(span, parent_ctx), GRPC_METADATA_SETTER
            )
        self._client.begin(info)

    def client_finish(self, call: ClientCall) -> None:
        span: Span | None = call.span
        if span is None:
            return
        # The record may have been evicted since the start (a newer one then counts the finish).
        info = self._client.methods.get(call.method) or self._client_info(call.method)
        code = call.code or grpc.StatusCode.UNKNOWN
        if span.is_recording():
            if code is not grpc.StatusCode.OK:
                _set_code(span, info.mode, code)
                span.set_attribute("error.type", code.name)
                span.set_status(Status(StatusCode.ERROR, _status_description(code, call.details)))
            span.end()
        self._client.end(info, code, call.started)

    # -- server ------------------------------------------------------------------------------------

    def server_start(self, call: ServerCall) -> None:
        info = self._server.methods.get(call.method) or self._server_info(call.method)
        if not info.traced:
            return
        parent_ctx = self._extract(call.metadata, None, GRPC_METADATA_GETTER)
        parent = trace.get_current_span(parent_ctx).get_span_context()
        span: Span
        if self._sampled(parent):
            peer = _peer_attributes(call.context)
            lean = self._lean
            if lean is not None:
                # The peer goes in at the start: a lean span copies its attributes on first write.
                attrs = {**info.span_attrs, **peer} if peer else info.span_attrs
                span = lean.start(info.span_name, parent, SpanKind.SERVER, attrs)
            else:
                span = self._tracer.start_span(
                    info.span_name, parent_ctx, SpanKind.SERVER, info.span_attrs
                )
                if peer and span.is_recording():
                    span.set_attributes(peer)
        else:
            span = _unsampled_span(parent)
        call.span = span
        self._server.begin(info)
        # No detach: the chain runs each sync call in its own copy of the contextvars context
        # (``needs_context``) and each aio call in its own task, so this never outlives the call.
        otel_context.attach(trace.set_span_in_context(span, parent_ctx))

    def server_finish(self, call: ServerCall) -> None:
        span: Span | None = call.span
        if span is None:
            return
        info = self._server.methods.get(call.method) or self._server_info(call.method)
        code = call.code or grpc.StatusCode.UNKNOWN
        if span.is_recording():
            if code is not grpc.StatusCode.OK:
                _set_code(span, info.mode, code)
            crash = _handler_crash(call)
            if crash is not None:
                span.record_exception(crash)
            if code in SERVER_ERROR_CODES:
                span.set_attribute(
                    "error.type", type(crash).__qualname__ if crash is not None else code.name
                )
                span.set_status(Status(StatusCode.ERROR, _status_description(code, call.details)))
            span.end()
        self._server.end(info, code, call.started)


def _set_code(span: Span, mode: SemconvMode, code: grpc.StatusCode) -> None:
    """The final status code on a span, under the names ``mode`` emits."""
    if mode.old:
        span.set_attribute("rpc.grpc.status_code", code.value[0])
    if mode.stable:
        span.set_attribute("rpc.response.status_code", code.name)


def _handler_crash(call: ServerCall) -> BaseException | None:
    """The exception a handler crashed with, or ``None`` when it ended by a status: ``abort``
    raises too (a bare ``Exception`` in sync servers), but then the context holds the code."""
    error = call.error
    if error is None or not isinstance(error, Exception) or isinstance(error, grpc.RpcError):
        return None
    try:
        code = call.context.code()
    except Exception:  # a context without code(); treat the exception as the outcome
        code = None
    if isinstance(code, grpc.StatusCode) and code is not grpc.StatusCode.OK:
        return None
    return error


_W3C_ONLY: Final = "w3c"
_W3C_AND_BAGGAGE: Final = "w3c+baggage"


def _w3c_mode(propagator: TextMapPropagator) -> str | None:
    """Whether client injection may write ``traceparent`` directly: the propagator is exactly
    W3C trace context, or the stock composite of W3C trace context and W3C baggage (then only
    when the context carries no baggage). Anything else goes through ``propagator.inject``."""
    if type(propagator) is TraceContextTextMapPropagator:
        return _W3C_ONLY
    if type(propagator) is CompositePropagator:
        parts = getattr(propagator, "_propagators", None)
        if isinstance(parts, list | tuple) and [type(p) for p in parts] == [
            TraceContextTextMapPropagator,
            W3CBaggagePropagator,
        ]:
            return _W3C_AND_BAGGAGE
    return None


def _unsampled_span(parent: SpanContext) -> Span:
    """A valid, non-recording span: the parent's trace (or a fresh one) with sampling off, so the
    context still propagates and downstream services stay in the same trace."""
    return NonRecordingSpan(new_span_context(parent, False))


def _peer_attributes(context: Any) -> dict[str, AttributeValue]:
    """``network.peer.address``/``.port`` of a server call's peer, as far as grpcio tells it."""
    peer_of = getattr(context, "peer", None)
    peer = peer_of() if peer_of is not None else None
    if not isinstance(peer, str) or not peer:
        return {}
    address, port = _parse_peer(peer)
    if port is None:
        return {"network.peer.address": address}
    return {"network.peer.address": address, "network.peer.port": port}


def _status_description(code: grpc.StatusCode, details: str | None) -> str:
    return f"{code.name}: {details}" if details else code.name


@functools.lru_cache(maxsize=256)
def _target_attributes(target: object) -> Mapping[str, AttributeValue]:
    """``server.address``/``server.port`` for a channel target (empty for no target, or one
    that is not a non-empty string). Cached: the same few targets come back on every call."""
    if not isinstance(target, str) or not target:
        return _NO_ATTRIBUTES
    address, port = _parse_target(target)
    found: dict[str, AttributeValue] = {}
    if address:
        found["server.address"] = address
    if port is not None:
        found["server.port"] = port
    return MappingProxyType(found)


_NO_ATTRIBUTES: Final[Mapping[str, AttributeValue]] = MappingProxyType({})


def _parse_target(target: str) -> tuple[str, int | None]:
    """A channel target (``host:port``, ``dns:///host:port``, ``ipv4:1.2.3.4:5``, ``[::1]:5``,
    ``unix:/path``) -> server address and port, as far as the target says."""
    rest = target
    if "://" in rest:
        scheme, _, rest = rest.partition("://")
        if scheme.startswith("unix"):
            return rest, None
        rest = rest.rpartition("/")[2] if "/" in rest else rest
    elif rest.startswith(("unix:", "unix-abstract:")):
        return rest.partition(":")[2], None
    elif rest.startswith(("ipv4:", "ipv6:", "dns:")):
        rest = rest.partition(":")[2]
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
        return host, int(port) if port.isdigit() else None
    host, sep, port = rest.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return rest, None
