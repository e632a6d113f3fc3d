"""The export pipeline :func:`modelwatch.configure` builds: bounded span processing, OTLP
exporters, compact console output and a pull-only Prometheus endpoint."""

from __future__ import annotations

from typing import Any, Final

from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from modelwatch._resolve import Config
from modelwatch._safety import log_due, report_internal_error
from modelwatch.errors import ConfigurationError

#: Spans buffered for export at most; beyond it they are dropped and counted, never blocking.
SPAN_QUEUE_SIZE: Final = 2048
#: How long one export may take before it is abandoned (a dead collector costs this, off-thread).
EXPORT_TIMEOUT_S: Final = 5.0
METRIC_EXPORT_INTERVAL_S: Final = 10.0


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


def _otlp_exporters(config: Config) -> tuple[Any, Any]:
    endpoint = config.otlp_endpoint
    assert endpoint is not None
    if config.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        insecure = endpoint.startswith("http://")
        return (
            GrpcSpanExporter(endpoint=endpoint, insecure=insecure, timeout=EXPORT_TIMEOUT_S),
            GrpcMetricExporter(endpoint=endpoint, insecure=insecure, timeout=EXPORT_TIMEOUT_S),
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return (
        OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=EXPORT_TIMEOUT_S),
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", timeout=EXPORT_TIMEOUT_S),
    )


def _prometheus_reader(config: Config) -> tuple[MetricReader, Any, int]:
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError as exc:
        raise ConfigurationError(
            "prometheus_port needs the optional dependencies: pip install 'modelwatch[prometheus]'"
        ) from exc

    class PullOnlyPrometheusReader(PrometheusMetricReader):
        """A scrape pulls; a flush must not. The stock reader queues one snapshot per
        ``force_flush`` and the next scrape prints them all: duplicate series."""

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

    registry = CollectorRegistry()
    reader = PullOnlyPrometheusReader(disable_target_info=False, registry=registry)
    assert config.prometheus_port is not None
    try:
        server, thread = start_http_server(
            config.prometheus_port, addr=config.prometheus_host, registry=registry
        )
    except OSError as exc:
        raise ConfigurationError(
            f"prometheus_port: cannot listen on "
            f"{config.prometheus_host}:{config.prometheus_port}: {exc}"
        ) from exc
    return reader, (server, thread), int(server.server_port)
