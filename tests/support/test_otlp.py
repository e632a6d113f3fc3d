"""The OTLP receiver of tests/support/otlp.py decodes what the stock OTLP exporters send."""

from __future__ import annotations

import gzip
import json
import math
import socket
import time
from collections.abc import Iterator

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from support.otlp import BlackholeEndpoint, DeadEndpoint, OtlpReceiver
from support.servers import http_request, wait_until

RESOURCE = Resource.create({"service.name": "otlp-receiver-test", "deployment.environment": "ci"})


def span_exporter(receiver: OtlpReceiver, transport: str) -> SpanExporter:
    if transport == "grpc":
        return GrpcSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True, timeout=5)
    return HttpSpanExporter(endpoint=receiver.traces_url, timeout=5, compression=Compression.Gzip)


def metric_exporter(receiver: OtlpReceiver, transport: str) -> MetricExporter:
    if transport == "grpc":
        return GrpcMetricExporter(endpoint=receiver.grpc_endpoint, insecure=True, timeout=5)
    return HttpMetricExporter(endpoint=receiver.metrics_url, timeout=5)


@pytest.fixture(params=["http", "grpc"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tracer_provider(otlp_receiver: OtlpReceiver, transport: str) -> Iterator[TracerProvider]:
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(span_exporter(otlp_receiver, transport)))
    yield provider
    provider.shutdown()


def test_spans_from_the_stock_exporters(
    otlp_receiver: OtlpReceiver, tracer_provider: TracerProvider, transport: str
) -> None:
    tracer = tracer_provider.get_tracer("modelwatch.test", "1.2.3")
    with tracer.start_as_current_span("agent run") as parent:
        with tracer.start_as_current_span(
            "chat m1",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.request.model": "m1",
                "gen_ai.usage.input_tokens": 12,
                "tags": ("a", "b"),
                "temperature": 0.5,
                "stream": False,
            },
        ) as child:
            child.add_event("retry", {"attempt": 2})
            child.set_status(Status(StatusCode.ERROR, "boom"))

    spans = otlp_receiver.wait_for_spans(2)
    by_name = {span.name: span for span in spans}
    chat, run = by_name["chat m1"], by_name["agent run"]
    assert chat.transport == ("grpc" if transport == "grpc" else "http/protobuf")
    assert chat.trace_id == run.trace_id == format(parent.get_span_context().trace_id, "032x")
    assert chat.span_id == format(child.get_span_context().span_id, "016x")
    assert chat.parent_span_id == run.span_id
    assert run.parent_span_id is None
    assert (chat.kind, run.kind) == ("CLIENT", "INTERNAL")
    assert chat.attributes == {
        "gen_ai.request.model": "m1",
        "gen_ai.usage.input_tokens": 12,
        "tags": ("a", "b"),
        "temperature": 0.5,
        "stream": False,
    }
    assert (chat.status, chat.status_message) == ("ERROR", "boom")
    assert run.status == "UNSET"
    assert [(e.name, e.attributes) for e in chat.events] == [("retry", {"attempt": 2})]
    assert chat.resource["service.name"] == "otlp-receiver-test"
    assert chat.resource["deployment.environment"] == "ci"
    assert (chat.scope_name, chat.scope_version) == ("modelwatch.test", "1.2.3")
    assert chat.end_time_unix_nano >= chat.start_time_unix_nano > 0
    assert otlp_receiver.spans("chat m1") == [chat]


def test_metrics_from_the_stock_exporters(otlp_receiver: OtlpReceiver, transport: str) -> None:
    reader = PeriodicExportingMetricReader(
        metric_exporter(otlp_receiver, transport), export_interval_millis=math.inf
    )
    provider = MeterProvider(metric_readers=[reader], resource=RESOURCE)
    try:
        meter = provider.get_meter("modelwatch.test")
        calls = meter.create_counter("modelwatch.calls", unit="{call}")
        duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            explicit_bucket_boundaries_advisory=[0.1, 1.0, 10.0],
        )
        calls.add(2, {"gen_ai.request.model": "m1"})
        calls.add(3, {"gen_ai.request.model": "m1"})
        calls.add(1, {"gen_ai.request.model": "m2"})
        for seconds in (0.05, 0.5, 0.7, 20.0):
            duration.record(seconds, {"gen_ai.operation.name": "chat"})
        assert provider.force_flush(5_000)
    finally:
        provider.shutdown()

    points = otlp_receiver.wait_for_metric("modelwatch.calls")
    values = {p.attributes["gen_ai.request.model"]: p.value for p in points}
    assert values == {"m1": 5, "m2": 1}
    assert {(p.kind, p.unit, p.is_monotonic, p.temporality) for p in points} == {
        ("sum", "{call}", True, "CUMULATIVE")
    }
    (hist, *_) = otlp_receiver.metric_points("gen_ai.client.operation.duration")
    assert hist.kind == "histogram"
    assert hist.attributes == {"gen_ai.operation.name": "chat"}
    assert hist.count == 4
    assert hist.sum == pytest.approx(21.25)
    assert hist.explicit_bounds == (0.1, 1.0, 10.0)
    assert hist.bucket_counts == (1, 2, 0, 1)
    assert (hist.min, hist.max) == (0.05, 20.0)
    assert hist.resource["service.name"] == "otlp-receiver-test"
    assert {"modelwatch.calls", "gen_ai.client.operation.duration"} <= otlp_receiver.metric_names()


def test_logs_from_the_stock_exporters(otlp_receiver: OtlpReceiver, transport: str) -> None:
    exporter: LogRecordExporter = (
        GrpcLogExporter(endpoint=otlp_receiver.grpc_endpoint, insecure=True, timeout=5)
        if transport == "grpc"
        else HttpLogExporter(endpoint=otlp_receiver.logs_url, timeout=5)
    )
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    try:
        provider.get_logger("modelwatch.test").emit(
            body="fallback to m2",
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            attributes={"gen_ai.request.model": "m1"},
            event_name="modelwatch.fallback",
        )
    finally:
        provider.shutdown()
    (record,) = otlp_receiver.wait_for(otlp_receiver.logs, message="a log record")
    assert record.body == "fallback to m2"
    assert (record.severity_text, record.severity_number) == ("WARN", SeverityNumber.WARN.value)
    assert record.event_name == "modelwatch.fallback"
    assert record.attributes == {"gen_ai.request.model": "m1"}
    assert record.resource["service.name"] == "otlp-receiver-test"
    assert record.scope_name == "modelwatch.test"


def test_otlp_json_with_hex_ids_and_gzip(otlp_receiver: OtlpReceiver) -> None:
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    payload = {
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "json-client"}}]},
            "scopeSpans": [{
                "scope": {"name": "hand-written"},
                "spans": [{
                    "traceId": trace_id, "spanId": span_id, "parentSpanId": "",
                    "name": "json span", "kind": 3,
                    "startTimeUnixNano": "1700000000000000000",
                    "endTimeUnixNano": "1700000000500000000",
                    "attributes": [
                        {"key": "n", "value": {"intValue": "7"}},
                        {"key": "ok", "value": {"boolValue": True}},
                        {"key": "list", "value": {"arrayValue": {"values": [
                            {"stringValue": "x"}, {"doubleValue": 1.5}]}}},
                    ],
                    "status": {"code": 2, "message": "bad"},
                }],
            }],
        }]
    }  # fmt: skip
    status, body = http_request(
        "POST",
        otlp_receiver.traces_url,
        gzip.compress(json.dumps(payload).encode()),
        {"Content-Type": "application/json", "Content-Encoding": "gzip", "X-Test": "yes"},
    )
    assert status == 200
    assert json.loads(body) == {}
    (span,) = otlp_receiver.spans()
    assert (span.name, span.trace_id, span.span_id, span.parent_span_id) == (
        "json span", trace_id, span_id, None,
    )  # fmt: skip
    assert span.kind == "CLIENT"
    assert span.attributes == {"n": 7, "ok": True, "list": ("x", 1.5)}
    assert (span.status, span.status_message) == ("ERROR", "bad")
    assert span.resource == {"service.name": "json-client"}
    (request,) = otlp_receiver.requests("traces")
    assert request.transport == "http/json"
    assert request.headers["x-test"] == "yes"


def test_chunked_protobuf_request(otlp_receiver: OtlpReceiver) -> None:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.name, span.trace_id, span.span_id = "chunked", b"\x01" * 16, b"\x02" * 8
    status, _ = http_request(  # urllib sends the body chunked when this header is set
        "POST",
        otlp_receiver.traces_url,
        request.SerializeToString(),
        {"Content-Type": "application/x-protobuf", "Transfer-Encoding": "chunked"},
    )
    assert status == 200
    (received,) = otlp_receiver.spans()
    assert (received.name, received.trace_id, received.span_id) == ("chunked", "01" * 16, "02" * 8)
    headers = otlp_receiver.requests("traces")[0].headers
    assert headers["transfer-encoding"] == "chunked"
    assert "content-length" not in headers


def test_bad_requests_are_rejected_and_not_stored(otlp_receiver: OtlpReceiver) -> None:
    assert http_request("POST", f"{otlp_receiver.http_endpoint}/v1/nope", b"")[0] == 404
    not_protobuf = b"\xff\xff\xff"
    protobuf = {"Content-Type": "application/x-protobuf"}
    assert http_request("POST", otlp_receiver.traces_url, not_protobuf, protobuf)[0] == 400
    bad_gzip = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    assert http_request("POST", otlp_receiver.metrics_url, b"plain", bad_gzip)[0] == 400
    assert otlp_receiver.requests() == []


def test_wait_for_times_out_with_a_message(otlp_receiver: OtlpReceiver) -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"timed out .* 1 span\(s\) named 'never'"):
        otlp_receiver.wait_for_spans(1, name="never", timeout=0.2)
    assert time.monotonic() - started < 2


# -- dead endpoints ---------------------------------------------------------------------------


def test_closed_endpoint_refuses_connections(dead_endpoint_closed: DeadEndpoint) -> None:
    assert dead_endpoint_closed.url == f"http://127.0.0.1:{dead_endpoint_closed.port}"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", dead_endpoint_closed.port), timeout=2).close()
    exporter = HttpSpanExporter(endpoint=f"{dead_endpoint_closed.url}/v1/traces", timeout=1)
    try:
        started = time.monotonic()
        assert exporter.export([_finished_span()]) is SpanExportResult.FAILURE
        assert time.monotonic() - started < 5
    finally:
        exporter.shutdown()


def test_blackhole_endpoint_accepts_and_never_answers(
    dead_endpoint_blackhole: BlackholeEndpoint,
) -> None:
    with socket.create_connection(("127.0.0.1", dead_endpoint_blackhole.port), timeout=2) as s:
        s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):
            s.recv(1)
        wait_until(lambda: dead_endpoint_blackhole.bytes_received > 0, message="bytes read")
    assert dead_endpoint_blackhole.connections_accepted == 1


def test_blackhole_makes_the_http_exporter_time_out(
    dead_endpoint_blackhole: BlackholeEndpoint,
) -> None:
    exporter = HttpSpanExporter(endpoint=f"{dead_endpoint_blackhole.url}/v1/traces", timeout=0.5)
    try:
        started = time.monotonic()
        assert exporter.export([_finished_span()]) is SpanExportResult.FAILURE
        assert time.monotonic() - started < 5
    finally:
        exporter.shutdown()
    wait_until(lambda: dead_endpoint_blackhole.connections_accepted >= 1, message="a connection")


def _finished_span() -> object:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("t").start_span("lost").end()
    provider.shutdown()
    (span,) = memory.get_finished_spans()
    return span
