"""Collect modelwatch's spans and metric points in memory, for your own tests.

>>> import modelwatch
>>> from modelwatch.testing import capture
>>> with capture() as cap:
...     with modelwatch.monitored(model="m", provider="p"):
...         pass
>>> cap.span("chat m").attributes["gen_ai.request.model"]
'm'

Inside the block modelwatch sends its telemetry to in-memory providers instead of the global
ones; nothing global is replaced, so it works whatever the host application configured.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelwatch.capture._telemetry import use_providers

__all__ = ["Captured", "MetricPoint", "capture"]


@dataclass(frozen=True)
class MetricPoint:
    """One metric data point: its metric's name and unit, attributes, and value.

    ``value`` is the sum for counters and gauges' last value; for histograms it is the sum of
    the recorded values, with ``count`` and ``bucket_counts``/``bounds`` filled in.
    """

    name: str
    unit: str
    attributes: Mapping[str, Any]
    value: float
    count: int | None = None
    bounds: tuple[float, ...] = ()
    bucket_counts: tuple[int, ...] = ()


def _matches(attributes: Mapping[str, Any] | None, wanted: Mapping[str, Any] | None) -> bool:
    if not wanted:
        return True
    attributes = attributes or {}
    return all(attributes.get(k) == v for k, v in wanted.items())


class Captured:
    """What :func:`capture` collected: finished spans and metric points, with finders."""

    def __init__(self, span_exporter: InMemorySpanExporter, reader: InMemoryMetricReader) -> None:
        self._spans = span_exporter
        self._reader = reader

    @property
    def spans(self) -> list[ReadableSpan]:
        """Every finished span, in the order they ended."""
        return list(self._spans.get_finished_spans())

    def find_spans(
        self, name: str | None = None, attributes: Mapping[str, Any] | None = None
    ) -> list[ReadableSpan]:
        """Finished spans with this name (any if ``None``) whose attributes include these."""
        return [
            s
            for s in self.spans
            if (name is None or s.name == name) and _matches(s.attributes, attributes)
        ]

    def span(self, name: str, attributes: Mapping[str, Any] | None = None) -> ReadableSpan:
        """The one finished span with this name (and attributes); ``AssertionError`` otherwise."""
        found = self.find_spans(name, attributes)
        if len(found) != 1:
            names = [s.name for s in self.spans]
            raise AssertionError(f"expected one span {name!r}, found {len(found)} among {names}")
        return found[0]

    def metric_points(
        self, name: str, attributes: Mapping[str, Any] | None = None
    ) -> list[MetricPoint]:
        """Current points of metric ``name`` whose attributes include ``attributes``."""
        data = self._reader.get_metrics_data()
        points: list[MetricPoint] = []
        if data is None:
            return points
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        if not _matches(point.attributes, attributes):
                            continue
                        points.append(_to_point(metric.name, metric.unit or "", point))
        return points

    def metric_sum(self, name: str, attributes: Mapping[str, Any] | None = None) -> float:
        """Sum of the values (histogram sums, counter totals) of the matching points."""
        return sum(p.value for p in self.metric_points(name, attributes))

    def metric_count(self, name: str, attributes: Mapping[str, Any] | None = None) -> int:
        """Number of recorded values of a histogram over the matching points."""
        return sum(p.count or 0 for p in self.metric_points(name, attributes))

    def clear(self) -> None:
        """Forget the spans collected so far (metrics are cumulative and stay)."""
        self._spans.clear()


def _to_point(name: str, unit: str, point: Any) -> MetricPoint:
    attributes = dict(point.attributes or {})
    if isinstance(point, HistogramDataPoint):
        return MetricPoint(
            name,
            unit,
            attributes,
            float(point.sum),
            point.count,
            tuple(point.explicit_bounds),
            tuple(point.bucket_counts),
        )
    assert isinstance(point, NumberDataPoint)
    return MetricPoint(name, unit, attributes, float(point.value))


@contextmanager
def capture(resource: Resource | None = None) -> Iterator[Captured]:
    """Send modelwatch telemetry to memory inside the block and yield what was collected."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource or Resource.create({}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
    try:
        with use_providers(tracer_provider, meter_provider):
            yield Captured(exporter, reader)
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()
