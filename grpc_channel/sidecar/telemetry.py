"""The sidecar's traces and RPC metrics: a :class:`~.observer.ProxyObserver` on OpenTelemetry.

:class:`SidecarTelemetry` gives every call the proxy accepts:

- one SERVER-kind span named after the method path without its leading ``/``
  (``"pkg.Service/Method"``), whose parent is the caller's W3C ``traceparent``/``tracestate``
  (a call without them, or with malformed ones, starts a new trace). Attributes:
  ``rpc.system="grpc"``, ``rpc.service``, ``rpc.method``, ``rpc.grpc.status_code`` (the integer
  code), ``grpc_channel.app_id`` (this sidecar's app), ``grpc_channel.target_app_id`` and
  ``grpc_channel.target_local`` (True: the call goes to this sidecar's own app). The status is
  ERROR for every code but OK: unlike an app's own server span (see
  :data:`~grpc_channel.interceptors.SERVER_ERROR_CODES`), a proxy hop that did not end OK is
  what an operator looks for, whoever's fault it was. Metadata values are never attributes:
  they may hold tokens.
- the upstream metadata with any incoming ``traceparent``/``tracestate`` replaced by the new
  span's context, so the next hop's span is this span's child. W3C is used whatever the global
  propagator is, because the sidecar's peers (Dapr, the dapr SDK, our channels) speak W3C.
  When the span context is not valid (the no-op tracer provider with no caller trace), the
  caller's headers are passed on untouched rather than dropped.
- metrics (names follow the OpenTelemetry RPC semantic conventions where one exists, so stock
  dashboards find them; the counters carry a ``grpc_channel.sidecar.`` prefix because the
  conventions have no such instrument and the prefix keeps them apart from the interceptors'
  ``rpc.server.*`` ones in the same meter provider):

  ===================================== ============== ======== =============================
  name                                  kind           unit     attributes
  ===================================== ============== ======== =============================
  ``rpc.server.call.duration``          histogram      ``s``    all of :data:`METRIC_KEYS`
  ``grpc_channel.sidecar.calls``        counter        ``{call}`` all of :data:`METRIC_KEYS`
  ``grpc_channel.sidecar.active_calls`` up-down counter ``{call}`` all but the status code
  ===================================== ============== ======== =============================

  The duration histogram's buckets are :data:`DURATION_BUCKETS` (50 µs to 10 s; the one list the
  interceptors' duration histograms use too), given as the instrument's
  ``explicit_bucket_boundaries_advisory``: the SDK's default buckets start at 5 (ms or s), which
  would put every loopback proxy hop (well under a millisecond of our time) in the first bucket.
  A :class:`~opentelemetry.sdk.metrics.view.View` configured on the provider still wins over the
  advisory.

- the RPC attribute names follow ``OTEL_SEMCONV_STABILITY_OPT_IN``, read once when the
  :class:`SidecarTelemetry` is built (see :mod:`grpc_channel.interceptors._semconv`). By default
  (the names above, :data:`METRIC_KEYS`): ``rpc.system="grpc"``, ``rpc.service``, ``rpc.method``
  (``"Method"``) and ``rpc.grpc.status_code`` (int). With ``rpc``: ``rpc.system.name="grpc"``,
  ``rpc.method`` (``"pkg.Service/Method"``), ``rpc.response.status_code`` (the code's name,
  ``"OK"``) and, on failed calls, ``error.type`` (the code's name) on the histogram and counter
  too. With ``rpc/dup``: the union, where ``rpc.method`` takes the stable value (both
  conventions name the duration histogram ``rpc.server.call.duration`` in seconds, so each call
  is recorded once, not twice). The instrument names do not change.

The observer never raises into the proxy: a failure inside it is logged at DEBUG and the call
goes on (the span or metric for that call may then be missing).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Final

import grpc
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from grpc_channel.interceptors import (
    DURATION_BUCKETS,
    MetadataPairs,
    SemconvMode,
    extract_trace_context,
    inject_trace_context,
    semconv_mode,
)

from .observer import ProxiedCall, ProxyObserver

__all__ = [
    "ACTIVE_CALLS_METRIC",
    "CALLS_METRIC",
    "DURATION_BUCKETS",
    "DURATION_METRIC",
    "METRIC_KEYS",
    "SidecarTelemetry",
]

# DURATION_BUCKETS (re-exported): the explicit bucket boundaries of DURATION_METRIC, seconds,
# 50 µs .. 10 s; defined once, in grpc_channel.interceptors._semconv.

_log = logging.getLogger(__name__)

_INSTRUMENTATION_NAME: Final = "grpc_channel.sidecar"

#: Histogram of proxied call durations, seconds (OTel RPC semantic conventions' name).
DURATION_METRIC: Final = "rpc.server.call.duration"
#: Counter of proxied calls that ended, by status code.
CALLS_METRIC: Final = "grpc_channel.sidecar.calls"
#: Up-down counter of proxied calls in flight.
ACTIVE_CALLS_METRIC: Final = "grpc_channel.sidecar.active_calls"

_APP_ID: Final = "grpc_channel.app_id"
_TARGET_APP_ID: Final = "grpc_channel.target_app_id"
_TARGET_LOCAL: Final = "grpc_channel.target_local"
_STATUS_CODE: Final = "rpc.grpc.status_code"
_STABLE_STATUS_CODE: Final = "rpc.response.status_code"

#: The attribute keys of the metrics by default (the active-calls counter has all but the status
#: code); ``OTEL_SEMCONV_STABILITY_OPT_IN`` changes the RPC ones (see the module docs).
METRIC_KEYS: Final[tuple[str, ...]] = (
    _APP_ID,
    _TARGET_APP_ID,
    "rpc.system",
    "rpc.service",
    "rpc.method",
    _STATUS_CODE,
)

# W3C on both sides whatever the global propagator says (see the module docs).
_W3C: Final = TraceContextTextMapPropagator()
# The call clock, a module global so a test can stand a fake one in.
_clock = time.perf_counter
_TRACE_KEYS: Final = frozenset({"traceparent", "tracestate"})


def _split_method(full_method: str) -> tuple[str, str]:
    """``"/pkg.Service/Method"`` -> ``("pkg.Service", "Method")``; no service part -> ``""``."""
    path = full_method[1:] if full_method.startswith("/") else full_method
    service, sep, method = path.rpartition("/")
    return (service, method) if sep else ("", path)


class _Call:
    """One observed call: its span, start time and metric attributes; ends once."""

    __slots__ = ("_attrs", "_ended", "_lock", "_mode", "_owner", "_span", "_started")

    def __init__(self, owner: SidecarTelemetry, span: Span, attrs: dict[str, AttributeValue]):
        self._owner = owner
        self._mode = owner.mode
        self._span = span
        self._attrs = attrs
        self._started = _clock()
        # end() is called once by contract; the lock makes a second call a no-op instead of a
        # double count, whatever thread it comes from.
        self._lock = threading.Lock()
        self._ended = False

    def forward_metadata(self, pairs: MetadataPairs) -> MetadataPairs:
        try:
            context = trace.set_span_in_context(self._span, Context())
            if not self._span.get_span_context().is_valid:
                return pairs
            out: list[tuple[str, str | bytes]] = [
                (k, v) for k, v in pairs if k.lower() not in _TRACE_KEYS
            ]
            inject_trace_context(out, context, _W3C)
            return tuple(out)
        except Exception:  # never the call's failure
            _log.debug("sidecar telemetry: forward_metadata failed", exc_info=True)
            return pairs

    def end(self, code: grpc.StatusCode) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        try:
            elapsed = _clock() - self._started
            mode = self._mode
            codes: dict[str, AttributeValue] = {}
            if mode.old:
                codes[_STATUS_CODE] = code.value[0]
            if mode.stable:
                codes[_STABLE_STATUS_CODE] = code.name
            self._span.set_attributes(codes)
            if code is not grpc.StatusCode.OK:
                self._span.set_attribute("error.type", code.name)
                self._span.set_status(Status(StatusCode.ERROR, code.name))
                if mode.stable:  # the stable conventions mark failed calls on metrics too
                    codes["error.type"] = code.name
            self._span.end()
            owner = self._owner
            owner._active.add(-1, self._attrs)
            ended = {**self._attrs, **codes}
            owner._calls.add(1, ended)
            owner._duration.record(elapsed, ended)
        except Exception:
            _log.debug("sidecar telemetry: end failed", exc_info=True)


class _NoCall:
    """Stands in when :meth:`SidecarTelemetry.begin` failed: passes metadata on, records nothing."""

    __slots__ = ()

    def forward_metadata(self, pairs: MetadataPairs) -> MetadataPairs:
        return pairs

    def end(self, code: grpc.StatusCode) -> None:
        return None


_NO_CALL: Final = _NoCall()


class SidecarTelemetry(ProxyObserver):
    """Spans and RPC metrics for the calls a sidecar for ``app_id`` proxies (see module docs).

    ``tracer_provider`` and ``meter_provider`` default to the global ones (looked up once, here;
    the API's global providers are proxies, so one set later still takes effect). The semantic
    conventions (``mode``) come from ``OTEL_SEMCONV_STABILITY_OPT_IN``, read here once. Pass it as
    ``Sidecar(..., observer=SidecarTelemetry(app_id))``. Thread-safe.
    """

    def __init__(
        self,
        app_id: str,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        if not isinstance(app_id, str) or not app_id.strip():
            raise ValueError(f"app_id must be a non-empty string, got {app_id!r}")
        self.app_id = app_id
        self.mode: SemconvMode = semconv_mode()
        self._tracer = trace.get_tracer(_INSTRUMENTATION_NAME, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_INSTRUMENTATION_NAME, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            DURATION_METRIC,
            unit="s",
            description="Duration of calls proxied by the sidecar, from accept to final status.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._calls = meter.create_counter(
            CALLS_METRIC, unit="{call}", description="Calls proxied by the sidecar that ended."
        )
        self._active = meter.create_up_down_counter(
            ACTIVE_CALLS_METRIC, unit="{call}", description="Calls in flight through the sidecar."
        )

    def __repr__(self) -> str:
        return f"SidecarTelemetry({self.app_id!r})"

    def begin(
        self, method: str, target_app: str, local: bool, incoming: MetadataPairs
    ) -> ProxiedCall:
        """Open the call's span (parent: the caller's W3C context) and count it in flight."""
        try:
            service, name = _split_method(method)
            attrs: dict[str, AttributeValue] = {_APP_ID: self.app_id, _TARGET_APP_ID: target_app}
            if self.mode.old:
                attrs.update({"rpc.system": "grpc", "rpc.service": service, "rpc.method": name})
            if self.mode.stable:
                # Under rpc/dup the stable rpc.method (the full method) replaces the old one.
                full = f"{service}/{name}" if service else name
                attrs.update({"rpc.system.name": "grpc", "rpc.method": full})
            parent = extract_trace_context(incoming, propagator=_W3C)
            span = self._tracer.start_span(
                method[1:] if method.startswith("/") else method,
                context=parent,
                kind=SpanKind.SERVER,
                attributes={**attrs, _TARGET_LOCAL: bool(local)},
            )
            call = _Call(self, span, attrs)
            self._active.add(1, attrs)
            return call
        except Exception:
            _log.debug("sidecar telemetry: begin failed for %r", method, exc_info=True)
            return _NO_CALL
