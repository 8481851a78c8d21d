"""Lean spans: ``Tracing``'s own span objects, handed finished to an SDK span processor.

Why they exist: the SDK's ``Tracer.start_span`` plus ``Span.end`` costs 45-60 µs per span on this
project's benchmark machine, most of it re-validating the same attribute values on every span and
building the span a second time (the read-only copy) when it ends. A gRPC call's span has a fixed
shape per method, validated once, so ``Tracing`` can build it for about a tenth of that cost.

``TracingSpec(span_processor=BatchSpanProcessor(exporter))`` opts in. Then:

- ``Tracing`` makes its spans itself (ids from :func:`random.getrandbits`, the policy's own
  ParentBased(TraceIdRatioBased) sampling) and, when a span ends, hands an SDK
  :class:`~opentelemetry.sdk.trace.ReadableSpan` to the processor's ``on_end``. Exporters see the
  same fields a ``TracerProvider`` span would carry: name, kind, ids, parent, attributes, events,
  links, status, times, resource and instrumentation scope (``grpc_channel.interceptors``).
- The processor's ``on_start`` is not called: there is no SDK span to hand it. Processors that
  work at span start (adding attributes then) belong on a ``TracerProvider`` instead.
- The spans are full :class:`opentelemetry.trace.Span` objects while they are open
  (``ClientCall.span``, and the current span inside a traced server handler): attributes, events,
  links, status and exceptions recorded through them reach the export, under the SDK's span
  limits (``SpanLimits()``: the ``OTEL_*_LIMIT`` environment variables, else 128 each), with
  values checked as the SDK checks them (invalid ones are logged and dropped).
- Spans made *inside* a handler by your own tracer are children of the lean server span (it is
  the current span there), whatever tracer made them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

from ._extras import missing_extra

if TYPE_CHECKING:
    # The SDK is an optional dependency (the ``otel`` extra): imported when a LeanTracer is
    # built, never when this module is, so ``new_span_context`` works with the API alone.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
    from opentelemetry.sdk.util import BoundedList

__all__ = ["LeanSpan", "LeanTracer", "new_span_context"]

log = logging.getLogger("grpc_channel.interceptors")

_getrandbits = random.getrandbits
_time_ns = time.time_ns
_UNSET = Status(StatusCode.UNSET)
# W3C Trace Context level 2 "random trace id" flag: our trace ids are random.
_RANDOM_FLAG = 0x02
# [sampled][random] -> flags
_FLAGS = (
    (TraceFlags(TraceFlags.DEFAULT), TraceFlags(_RANDOM_FLAG)),
    (TraceFlags(TraceFlags.SAMPLED), TraceFlags(TraceFlags.SAMPLED | _RANDOM_FLAG)),
)


def new_span_context(parent: SpanContext, sampled: bool) -> SpanContext:
    """The context of a span ``Tracing`` makes itself (lean, or not sampled): a child of
    ``parent`` when that is valid (its trace id, trace state and random-id flag), else the root
    of a new trace with a random trace id."""
    if parent.is_valid:
        flags = _FLAGS[sampled][bool(parent.trace_flags & _RANDOM_FLAG)]
        return SpanContext(parent.trace_id, _getrandbits(64) or 1, False, flags, parent.trace_state)
    return SpanContext(_getrandbits(128) or 1, _getrandbits(64) or 1, False, _FLAGS[sampled][1])


class LeanTracer:
    """Makes :class:`LeanSpan` objects that end into one span processor (see the module doc).

    ``resource`` defaults to ``Resource.create()`` (what a default ``TracerProvider`` uses: the
    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` environment variables plus the SDK's
    own attributes). Needs the OpenTelemetry SDK: without it, raises
    :class:`~grpc_channel.interceptors._extras.MissingExtraError` naming the ``otel`` extra.
    """

    __slots__ = (
        "bounded_list",
        "event",
        "limits",
        "processor",
        "readable_span",
        "resource",
        "scope",
    )

    def __init__(
        self, processor: SpanProcessor, resource: Resource | None, scope_name: str
    ) -> None:
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
            from opentelemetry.sdk.util import BoundedList
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        except ImportError as exc:
            raise missing_extra(
                "lean spans (TracingSpec(span_processor=...))", "opentelemetry-sdk", "otel"
            ) from exc
        self.processor = processor
        self.resource = resource if resource is not None else Resource.create()
        self.scope = InstrumentationScope(scope_name)
        self.limits = SpanLimits()
        # The SDK classes the spans build, kept here so LeanSpan needs no SDK import of its own.
        self.event: type[Event] = Event
        self.readable_span: type[ReadableSpan] = ReadableSpan
        self.bounded_list: type[BoundedList[Any]] = BoundedList

    def start(
        self,
        name: str,
        parent: SpanContext,
        kind: SpanKind,
        attributes: Mapping[str, types.AttributeValue],
    ) -> LeanSpan:
        """A sampled span, child of ``parent`` when that is valid, else the root of a new trace.

        ``attributes`` must already be valid attribute values and must not change afterwards:
        the span shares the mapping until something is set on it.
        """
        context = new_span_context(parent, True)
        return LeanSpan(self, name, context, parent if parent.is_valid else None, kind, attributes)


class LeanSpan(trace.Span):
    """An open span of a :class:`LeanTracer`; ``end()`` hands it to the tracer's processor once.

    Follows the SDK span's rules: nothing changes after ``end()`` (a second ``end()`` is logged
    and ignored), a status of OK is final, ``UNSET`` is never set, and descriptions go with ERROR
    only. An exception raised by the processor's ``on_end`` is logged, not raised: a failing
    exporter must not fail the call being traced.
    """

    __slots__ = (
        "_attributes",
        "_context",
        "_end",
        "_events",
        "_kind",
        "_links",
        "_lock",
        "_name",
        "_owned",
        "_parent",
        "_start",
        "_status",
        "_tracer",
    )

    def __init__(
        self,
        tracer: LeanTracer,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Mapping[str, types.AttributeValue],
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        # Shared with every span of the method until a write makes this span its own copy.
        self._attributes: Mapping[str, types.AttributeValue] = attributes
        self._owned = False
        self._events: BoundedList[Event] | None = None
        self._links: BoundedList[Link] | None = None
        self._status = _UNSET
        self._start = _time_ns()
        self._end: int | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        c = self._context
        return (
            f"LeanSpan(name={self._name!r}, trace_id=0x{c.trace_id:032x}, "
            f"span_id=0x{c.span_id:016x})"
        )

    # -- reading ---------------------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end is None

    @property
    def name(self) -> str:
        return self._name

    @property
    def attributes(self) -> Mapping[str, types.AttributeValue]:
        """A copy of the attributes set so far."""
        return dict(self._attributes)

    # -- writing ---------------------------------------------------------------------------------

    def _own_attributes(self) -> BoundedAttributes:
        attributes = self._attributes
        if not self._owned:
            limits = self._tracer.limits
            attributes = BoundedAttributes(
                limits.max_span_attributes,
                attributes,
                immutable=False,
                max_value_len=limits.max_span_attribute_length,
            )
            self._attributes = attributes
            self._owned = True
        assert isinstance(attributes, BoundedAttributes)
        return attributes

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        with self._lock:
            if self._end is not None:
                log.warning("Setting attribute on ended span.")
                return
            self._own_attributes()[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        with self._lock:
            if self._end is not None:
                log.warning("Setting attribute on ended span.")
                return
            owned = self._own_attributes()
            for key, value in attributes.items():
                owned[key] = value

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        tracer = self._tracer
        limits = tracer.limits
        event = tracer.event(
            name,
            BoundedAttributes(
                limits.max_event_attributes,
                attributes,
                max_value_len=limits.max_attribute_length,
            ),
            _time_ns() if timestamp is None else timestamp,
        )
        with self._lock:
            if self._end is not None:
                log.warning("Calling add_event() on an ended span.")
                return
            if self._events is None:
                self._events = tracer.bounded_list(limits.max_events)
            self._events.append(event)

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        # As the SDK: a link needs a valid context, or at least attributes or a trace state.
        if context is None or not (context.is_valid or attributes or context.trace_state):
            return
        tracer = self._tracer
        limits = tracer.limits
        link = Link(
            context,
            BoundedAttributes(
                limits.max_link_attributes,
                attributes,
                max_value_len=limits.max_attribute_length,
                immutable=True,
            ),
        )
        with self._lock:
            if self._end is not None:
                log.warning("Calling add_link() on an ended span.")
                return
            if self._links is None:
                self._links = tracer.bounded_list(limits.max_links)
            self._links.append(link)

    def update_name(self, name: str) -> None:
        with self._lock:
            if self._end is not None:
                log.warning("Calling update_name() on an ended span.")
                return
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if isinstance(status, StatusCode):
            if status is StatusCode.UNSET:
                return
            status = Status(status, description)
        elif description is not None:
            log.warning("set_status: a description goes with a StatusCode, not a Status; ignored")
        if status.status_code is StatusCode.UNSET:
            return
        with self._lock:
            if self._end is not None:
                log.warning("Calling set_status() on an ended span.")
                return
            if self._status.status_code is not StatusCode.OK:
                self._status = status

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        kind = type(exception)
        module = kind.__module__
        event: dict[str, types.AttributeValue] = {
            "exception.type": (
                f"{module}.{kind.__qualname__}"
                if module and module != "builtins"
                else kind.__qualname__
            ),
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        with self._lock:
            if self._end is not None:
                log.warning("Calling end() on an ended span.")
                return
            self._end = end = _time_ns() if end_time is None else end_time
        tracer = self._tracer
        finished = tracer.readable_span(
            name=self._name,
            context=self._context,
            parent=self._parent,
            resource=tracer.resource,
            attributes=self._attributes,
            events=self._events if self._events is not None else (),
            links=self._links if self._links is not None else (),
            kind=self._kind,
            status=self._status,
            start_time=self._start,
            end_time=end,
            instrumentation_scope=tracer.scope,
        )
        try:
            tracer.processor.on_end(finished)
        except Exception:
            log.exception("span processor %r failed on_end of span %r", tracer.processor, self)
