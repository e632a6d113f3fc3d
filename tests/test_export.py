"""Exports are bounded in memory: a full span queue drops spans, counts them and warns once,
never blocking the host's call."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from structlog.testing import capture_logs

from modelwatch import _config, _safety


class StuckExporter(SpanExporter):
    """An exporter whose export never returns until released: the queue can only grow."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(10)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def test_full_queue_drops_and_counts_with_one_warning() -> None:
    _safety.reset_internal_error_log()
    exporter = StuckExporter()
    processor = _config._BoundedBatchSpanProcessor(
        exporter, max_queue_size=_config.SPAN_QUEUE_SIZE, max_export_batch_size=1
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    before = _config._BoundedBatchSpanProcessor.dropped
    extra = 500
    with capture_logs() as logs:
        for _ in range(_config.SPAN_QUEUE_SIZE + extra):
            tracer.start_span("s").end()
    dropped = _config._BoundedBatchSpanProcessor.dropped - before
    # the worker may have taken one batch off the queue before it got stuck
    assert extra - 2 <= dropped <= extra
    warnings = [e for e in logs if e["event"] == "modelwatch.internal_error"]
    assert len(warnings) == 1
    assert warnings[0]["site"] == "export_queue_full"
    exporter.release.set()
    provider.shutdown()
    assert exporter.exported >= _config.SPAN_QUEUE_SIZE - 2
