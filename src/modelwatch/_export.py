"""The export pipeline :func:`modelwatch.configure` builds: bounded span processing, OTLP
exporters, compact console output and a pull-only Prometheus endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from modelwatch._resolve import DEFAULT_EXPORT_TIMEOUT_S, Config
from modelwatch._safety import log_due, report_internal_error
from modelwatch.errors import ConfigurationError

#: Spans buffered for export at most; beyond it they are dropped and counted, never blocking.
SPAN_QUEUE_SIZE: Final = 2048
#: How long one export may take before it is abandoned (a dead collector costs this, off-thread).
EXPORT_TIMEOUT_S: Final = DEFAULT_EXPORT_TIMEOUT_S


class _BoundedBatchSpanProcessor(BatchSpanProcessor):
    """A batch processor that drops spans when its queue is full and *counts* the drops,
    logging one rate-limited warning instead of one line per dropped span."""

    dropped: int = 0

    def on_end(self, span: ReadableSpan) -> None:
        queue = getattr(getattr(self, "_batch_processor", None), "_queue", None)
        if queue is not None and len(queue) >= SPAN_QUEUE_SIZE:
            type(self).dropped += 1
            if log_due("export_queue_full"):  # the message is built only when it is logged
                report_internal_error(
                    "export_queue_full",
                    RuntimeError(
                        f"span export queue full ({SPAN_QUEUE_SIZE}); "
                        f"{type(self).dropped} span(s) dropped so far"
                    ),
                )
            return
        super().on_end(span)


def _span_line(span: ReadableSpan) -> str:
    """One readable line per span for ``console=True`` (the SDK's default is pages of JSON)."""
    start, end = span.start_time or 0, span.end_time or 0
    attrs = " ".join(f"{k}={v!r}" for k, v in (span.attributes or {}).items())
    status = "" if span.status.is_ok else f" status={span.status.status_code.name}"
    return f"[modelwatch span] {span.name} {(end - start) / 1e6:.1f}ms{status} {attrs}\n"


def _metrics_lines(data: Any) -> str:
    """One readable line per metric point for ``console=True``."""
    lines = []
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    attrs = ",".join(f"{k}={v}" for k, v in (point.attributes or {}).items())
                    if hasattr(point, "bucket_counts"):
                        value = f"count={point.count} sum={point.sum:.6g}"
                    else:
                        value = f"value={point.value:.6g}"
                    lines.append(f"[modelwatch metric] {metric.name}{{{attrs}}} {value}\n")
    return "".join(lines)


class ExportResults:
    """Counts exports the collector refused or that failed, so ``flush()`` can tell."""

    def __init__(self) -> None:
        self.failures = 0


class _TrackedSpanExporter(SpanExporter):
    """Delegates to the OTLP span exporter and counts failed exports."""

    def __init__(self, inner: SpanExporter, results: ExportResults) -> None:
        self._inner = inner
        self._results = results

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._inner.export(spans)
        if result is not SpanExportResult.SUCCESS:
            self._results.failures += 1
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _TrackedMetricExporter(MetricExporter):
    """Delegates to the OTLP metric exporter (same temporality and aggregation preferences)
    and counts failed exports."""

    def __init__(self, inner: MetricExporter, results: ExportResults) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._results = results

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        if result is not MetricExportResult.SUCCESS:
            self._results.failures += 1
        return result

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)


def make_sampler(config: Config) -> Sampler:
    """The sampler ``OTEL_TRACES_SAMPLER`` names, or parent-based ``sample_ratio``."""
    ratio = TraceIdRatioBased(config.sample_ratio)
    samplers: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": ratio,
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(ratio),
    }
    return samplers[config.sampler]


def otlp_exporters(config: Config, results: ExportResults) -> tuple[Any, Any]:
    """(span exporter, metric exporter), each ``None`` when its signal has no endpoint."""
    traces, metrics, timeout = (
        config.otlp_traces_endpoint,
        config.otlp_metrics_endpoint,
        config.export_timeout_s,
    )
    span: Any
    metric: Any
    if config.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        span = traces and GrpcSpanExporter(
            endpoint=traces, insecure=traces.startswith("http://"), timeout=timeout
        )
        metric = metrics and GrpcMetricExporter(
            endpoint=metrics, insecure=metrics.startswith("http://"), timeout=timeout
        )
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span = traces and OTLPSpanExporter(endpoint=traces, timeout=timeout)
        metric = metrics and OTLPMetricExporter(endpoint=metrics, timeout=timeout)
    return (
        _TrackedSpanExporter(span, results) if span else None,
        _TrackedMetricExporter(metric, results) if metric else None,
    )


def prometheus_reader(registry: Any = None) -> tuple[MetricReader, Any]:
    """A pull-only Prometheus reader on ``registry`` (a new one of its own by default):
    (reader, registry)."""
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry
    except ImportError as exc:
        raise ConfigurationError(
            "prometheus_port needs the optional dependencies: pip install 'modelwatch[prometheus]'"
        ) from exc

    class PullOnlyPrometheusReader(PrometheusMetricReader):
        """A scrape pulls; a flush must not. The stock reader queues one snapshot per
        ``force_flush`` and the next scrape prints them all: duplicate series."""

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

    registry = CollectorRegistry() if registry is None else registry
    return PullOnlyPrometheusReader(disable_target_info=False, registry=registry), registry


def is_pull_reader(reader: object) -> bool:
    """A reader that a scrape collects (Prometheus): flushing it would queue duplicates."""
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
    except ImportError:
        return False
    return isinstance(reader, PrometheusMetricReader)
