"""In-memory OpenTelemetry for the tracing tests (the scripted test servers are in
``support_harness``, the dapr SDK app in ``support_dapr_app``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@dataclass
class Telemetry:
    """An SDK tracer provider exporting to memory and a meter provider with an in-memory reader.

    ``lean=True``: the policy's spans take the lean path (``TracingSpec.span_processor``, a
    ``SimpleSpanProcessor`` into the same exporter); ``tracer_provider`` is still there for the
    test's own spans. :meth:`span_source` gives the ``TracingSpec`` keywords of either pipeline.
    """

    lean: bool = False
    exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)
    tracer_provider: TracerProvider = field(init=False)
    meter_provider: MeterProvider = field(init=False)
    lean_processor: SimpleSpanProcessor | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        if self.lean:
            self.lean_processor = SimpleSpanProcessor(self.exporter)

    def span_source(self) -> dict[str, Any]:
        """``tracer_provider=...`` or, when lean, ``span_processor=...``."""
        if self.lean_processor is not None:
            return {"span_processor": self.lean_processor}
        return {"tracer_provider": self.tracer_provider}

    def spans(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.exporter.get_finished_spans())

    def spans_of_kind(self, kind: trace.SpanKind) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.kind == kind]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        if data is None:
            return found
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def histogram_counts(self, name: str) -> dict[int, int]:
        """``rpc.grpc.status_code`` -> number of recordings, summed over methods."""
        counts: dict[int, int] = {}
        for point in self.points(name):
            assert isinstance(point, HistogramDataPoint)
            code = int(point.attributes["rpc.grpc.status_code"])  # type: ignore[index,arg-type]
            counts[code] = counts.get(code, 0) + point.count
        return counts

    def sum_value(self, name: str) -> int:
        total = 0
        for point in self.points(name):
            assert isinstance(point, NumberDataPoint)
            total += int(point.value)
        return total

    def shutdown(self) -> None:
        if self.lean_processor is not None:
            self.lean_processor.shutdown()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
