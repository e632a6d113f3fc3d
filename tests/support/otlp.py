"""A small real OTLP receiver on 127.0.0.1, and two dead endpoints, for export tests.

No Collector or Jaeger binary can be had on these machines (SERVERS.md), so `OtlpReceiver` decodes
what the stock exporters send with the official `opentelemetry-proto` messages:

- OTLP/HTTP on one port: `POST /v1/traces`, `/v1/metrics`, `/v1/logs`, protobuf or JSON, with
  optional gzip (or deflate) Content-Encoding;
- OTLP/gRPC on another port: `TraceService`, `MetricsService`, `LogsService` (grpcio).

Fixtures (loaded as a plugin by tests/conftest.py):

- `otlp_receiver` (function): a started `OtlpReceiver`; see its docstring for the URLs to use.
- `dead_endpoint_closed`: a `DeadEndpoint` on a port of 127.0.0.1 where nothing listens.
- `dead_endpoint_blackhole`: a `BlackholeEndpoint` that accepts connections and never answers.
"""

from __future__ import annotations

import base64
import gzip
import json
import selectors
import socket
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from .servers import LOCALHOST, free_port, wait_until

T = TypeVar("T")

Attributes = dict[str, Any]

# signal -> (request message, response message)
_MESSAGES: dict[str, tuple[type[Message], type[Message]]] = {
    "traces": (
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
    ),
    "metrics": (
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
    ),
    "logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
}
# OTLP/JSON encodes these ids as hex; protobuf's JSON mapping expects base64 for bytes.
_HEX_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


# --------------------------------------------------------------------------------------------
# Decoded records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedRequest:
    """One export request as received: its signal, transport and headers, and the message."""

    signal: str  # "traces", "metrics" or "logs"
    transport: str  # "http/protobuf", "http/json" or "grpc"
    headers: dict[str, str]  # lower-cased names; gRPC metadata for grpc
    message: Message = field(repr=False)


@dataclass(frozen=True)
class SpanEvent:
    name: str
    attributes: Attributes
    time_unix_nano: int


@dataclass(frozen=True)
class SpanLink:
    trace_id: str
    span_id: str
    attributes: Attributes


@dataclass(frozen=True)
class ReceivedSpan:
    """A span flattened out of its resource and scope; ids are lower-case hex strings."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str  # "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER" (SpanKind names)
    attributes: Attributes
    status: str  # "UNSET", "OK" or "ERROR" (StatusCode names)
    status_message: str
    events: tuple[SpanEvent, ...]
    links: tuple[SpanLink, ...]
    resource: Attributes
    scope_name: str
    scope_version: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    transport: str
    raw: trace_pb2.Span = field(repr=False, compare=False)


@dataclass(frozen=True)
class MetricPoint:
    """One data point of a metric; fields not meaningful for its `kind` are None.

    `kind` is "sum", "gauge", "histogram", "exponential_histogram" or "summary". `value` is the
    number of a sum or gauge point; histograms fill `sum`, `count`, `bucket_counts`,
    `explicit_bounds`, `min` and `max`.
    """

    name: str
    kind: str
    unit: str
    description: str
    attributes: Attributes
    value: int | float | None
    sum: float | None
    count: int | None
    bucket_counts: tuple[int, ...] | None
    explicit_bounds: tuple[float, ...] | None
    min: float | None
    max: float | None
    is_monotonic: bool | None
    temporality: str | None  # "CUMULATIVE" or "DELTA" for sums and histograms
    time_unix_nano: int
    resource: Attributes
    scope_name: str
    transport: str
    raw: Message = field(repr=False, compare=False)


@dataclass(frozen=True)
class ReceivedLog:
    body: Any
    severity_text: str
    severity_number: int
    attributes: Attributes
    trace_id: str | None
    span_id: str | None
    event_name: str
    resource: Attributes
    scope_name: str
    transport: str
    raw: Message = field(repr=False, compare=False)


def any_value(value: common_pb2.AnyValue) -> Any:
    """An OTLP AnyValue as Python: str/bool/int/float/bytes, tuple for arrays, dict for kvlists."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(any_value(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(key_values: Any) -> Attributes:
    """Repeated KeyValue as a dict."""
    return {kv.key: any_value(kv.value) for kv in key_values}


def _hex(raw: bytes) -> str | None:
    return raw.hex() if raw else None


def _enum_name(enum: Any, number: int, prefix: str) -> str:
    return str(enum.Name(number)).removeprefix(prefix)


# --------------------------------------------------------------------------------------------
# The receiver
# --------------------------------------------------------------------------------------------


class OtlpReceiver:
    """OTLP/HTTP and OTLP/gRPC receiver on 127.0.0.1 that keeps everything it receives.

    Endpoints for the stock exporters:

    - HTTP: `traces_url`, `metrics_url`, `logs_url` (full URLs), or `http_endpoint` as
      OTEL_EXPORTER_OTLP_ENDPOINT (the exporters append /v1/<signal>);
    - gRPC: `grpc_endpoint` ("http://127.0.0.1:PORT": plain text), with `insecure=True`.

        exporter = OTLPSpanExporter(endpoint=otlp_receiver.traces_url)   # proto.http
        ...
        spans = otlp_receiver.wait_for_spans(2)
        assert {s.name for s in spans} == {"chat m1", "chat m2"}
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._http = _start_http(self)
        self.http_port: int = self._http.server_address[1]
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._http_thread.start()
        self._grpc_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-grpc")
        self._grpc = grpc.server(self._grpc_executor)
        add_servicers: list[tuple[Any, object]] = [
            (trace_service_pb2_grpc.add_TraceServiceServicer_to_server, _TraceServicer(self)),
            (metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server, _MetricsServicer(self)),
            (logs_service_pb2_grpc.add_LogsServiceServicer_to_server, _LogsServicer(self)),
        ]
        for add, servicer in add_servicers:
            add(servicer, self._grpc)
        self.grpc_port: int = self._grpc.add_insecure_port(f"{LOCALHOST}:0")
        self._grpc.start()

    # -- addresses -------------------------------------------------------------------------

    @property
    def http_endpoint(self) -> str:
        return f"http://{LOCALHOST}:{self.http_port}"

    @property
    def traces_url(self) -> str:
        return f"{self.http_endpoint}/v1/traces"

    @property
    def metrics_url(self) -> str:
        return f"{self.http_endpoint}/v1/metrics"

    @property
    def logs_url(self) -> str:
        return f"{self.http_endpoint}/v1/logs"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://{LOCALHOST}:{self.grpc_port}"

    # -- storage ---------------------------------------------------------------------------

    def _store(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def requests(self, signal: str | None = None) -> list[ReceivedRequest]:
        """Every request received so far, optionally of one signal ("traces", ...)."""
        with self._lock:
            return [r for r in self._requests if signal is None or r.signal == signal]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def spans(self, name: str | None = None) -> list[ReceivedSpan]:
        """All spans received (optionally only those called `name`), in arrival order."""
        found: list[ReceivedSpan] = []
        for request in self.requests("traces"):
            message: Any = request.message
            for resource_spans in message.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    found.extend(
                        _span(span, resource, scope_spans.scope, request.transport)
                        for span in scope_spans.spans
                        if name is None or span.name == name
                    )
        return found

    def metric_names(self) -> set[str]:
        return {point.name for point in self.metric_points()}

    def metric_points(self, name: str | None = None) -> list[MetricPoint]:
        """All data points of metric `name` (or of every metric), in arrival order."""
        found: list[MetricPoint] = []
        for request in self.requests("metrics"):
            message: Any = request.message
            for resource_metrics in message.resource_metrics:
                resource = attributes(resource_metrics.resource.attributes)
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        if name is None or metric.name == name:
                            found.extend(
                                _points(metric, resource, scope_metrics.scope, request.transport)
                            )
        return found

    def logs(self) -> list[ReceivedLog]:
        """All log records received, in arrival order."""
        found: list[ReceivedLog] = []
        for request in self.requests("logs"):
            message: Any = request.message
            for resource_logs in message.resource_logs:
                resource = attributes(resource_logs.resource.attributes)
                for scope_logs in resource_logs.scope_logs:
                    found.extend(
                        ReceivedLog(
                            body=any_value(record.body),
                            severity_text=record.severity_text,
                            severity_number=record.severity_number,
                            attributes=attributes(record.attributes),
                            trace_id=_hex(record.trace_id),
                            span_id=_hex(record.span_id),
                            event_name=record.event_name,
                            resource=resource,
                            scope_name=scope_logs.scope.name,
                            transport=request.transport,
                            raw=record,
                        )
                        for record in scope_logs.log_records
                    )
        return found

    # -- waiting ---------------------------------------------------------------------------

    def wait_for(
        self, predicate: Callable[[], T | None], timeout: float = 10.0, message: str = "OTLP data"
    ) -> T:
        """Poll `predicate()` (no arguments) until truthy, with a deadline; return its value."""
        return wait_until(predicate, timeout=timeout, message=message)

    def wait_for_spans(
        self, count: int = 1, name: str | None = None, timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        """Wait until at least `count` spans (called `name`, if given) arrived; return them."""

        def arrived() -> list[ReceivedSpan] | None:
            spans = self.spans(name)
            return spans if len(spans) >= max(count, 1) else None

        return self.wait_for(
            arrived, timeout, f"{count} span(s)" + (f" named {name!r}" if name else "")
        )

    def wait_for_metric(self, name: str, timeout: float = 10.0) -> list[MetricPoint]:
        """Wait until points of metric `name` arrived; return them."""
        return self.wait_for(lambda: self.metric_points(name), timeout, f"metric {name!r}")

    def close(self) -> None:
        self._grpc.stop(grace=None).wait(5)
        self._grpc_executor.shutdown(wait=True)
        self._http.shutdown()
        self._http.server_close()
        self._http_thread.join(5)


def _span(span: trace_pb2.Span, resource: Attributes, scope: Any, transport: str) -> ReceivedSpan:
    return ReceivedSpan(
        name=span.name,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=_hex(span.parent_span_id),
        kind=_enum_name(trace_pb2.Span.SpanKind, span.kind, "SPAN_KIND_"),
        attributes=attributes(span.attributes),
        status=_enum_name(trace_pb2.Status.StatusCode, span.status.code, "STATUS_CODE_"),
        status_message=span.status.message,
        events=tuple(
            SpanEvent(e.name, attributes(e.attributes), e.time_unix_nano) for e in span.events
        ),
        links=tuple(
            SpanLink(link.trace_id.hex(), link.span_id.hex(), attributes(link.attributes))
            for link in span.links
        ),
        resource=resource,
        scope_name=scope.name,
        scope_version=scope.version,
        start_time_unix_nano=span.start_time_unix_nano,
        end_time_unix_nano=span.end_time_unix_nano,
        transport=transport,
        raw=span,
    )


def _points(
    metric: metrics_pb2.Metric, resource: Attributes, scope: Any, transport: str
) -> list[MetricPoint]:
    kind = metric.WhichOneof("data")
    if kind is None:
        return []
    data = getattr(metric, kind)
    temporality = None
    if hasattr(data, "aggregation_temporality"):
        temporality = _enum_name(
            metrics_pb2.AggregationTemporality,
            data.aggregation_temporality,
            "AGGREGATION_TEMPORALITY_",
        )
    points = []
    for point in data.data_points:
        fields: dict[str, Any] = dict.fromkeys(
            ("value", "sum", "count", "bucket_counts", "explicit_bounds", "min", "max")
        )
        if kind in ("sum", "gauge"):
            fields["value"] = getattr(point, point.WhichOneof("value") or "as_int")
        else:
            fields["sum"] = point.sum
            fields["count"] = point.count
        if kind == "histogram":
            fields["bucket_counts"] = tuple(point.bucket_counts)
            fields["explicit_bounds"] = tuple(point.explicit_bounds)
        if kind in ("histogram", "exponential_histogram"):
            fields["min"] = point.min if point.HasField("min") else None
            fields["max"] = point.max if point.HasField("max") else None
        points.append(
            MetricPoint(
                name=metric.name,
                kind=kind,
                unit=metric.unit,
                description=metric.description,
                attributes=attributes(point.attributes),
                is_monotonic=data.is_monotonic if kind == "sum" else None,
                temporality=temporality,
                time_unix_nano=point.time_unix_nano,
                resource=resource,
                scope_name=scope.name,
                transport=transport,
                raw=point,
                **fields,
            )
        )
    return points


# -- OTLP/HTTP ---------------------------------------------------------------------------------


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                base64.b64encode(bytes.fromhex(value)).decode()
                if key in _HEX_ID_KEYS and isinstance(value, str)
                else _hex_ids_to_base64(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


def _decode_http(signal: str, body: bytes, content_type: str) -> tuple[Message, str]:
    request_cls, _ = _MESSAGES[signal]
    message = request_cls()
    if content_type == "application/json":
        json_format.ParseDict(
            _hex_ids_to_base64(json.loads(body)), message, ignore_unknown_fields=True
        )
        return message, "http/json"
    message.ParseFromString(body)
    return message, "http/protobuf"


def _start_http(receiver: OtlpReceiver) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so no keep-alive thread outlives close().
        protocol_version = "HTTP/1.0"

        def do_POST(self) -> None:
            signal = self.path.split("?", 1)[0].removeprefix("/v1/")
            if signal not in _MESSAGES:
                self._reply(404, b"unknown OTLP path", "text/plain")
                return
            body = self._read_body()
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            try:
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                message, transport = _decode_http(signal, body, content_type)
            except (OSError, ValueError, DecodeError, json_format.ParseError) as exc:
                self._reply(400, f"cannot decode: {exc}".encode(), "text/plain")
                return
            headers = {name.lower(): value for name, value in self.headers.items()}
            receiver._store(ReceivedRequest(signal, transport, headers, message))
            response = _MESSAGES[signal][1]()
            if content_type == "application/json":
                self._reply(200, json_format.MessageToJson(response).encode(), content_type)
            else:
                self._reply(200, response.SerializeToString(), "application/x-protobuf")

        def _read_body(self) -> bytes:
            if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return ThreadingHTTPServer((LOCALHOST, 0), Handler)


# -- OTLP/gRPC ---------------------------------------------------------------------------------


def _grpc_store(receiver: OtlpReceiver, signal: str, request: Message, context: Any) -> Message:
    metadata = {item.key.lower(): str(item.value) for item in context.invocation_metadata()}
    receiver._store(ReceivedRequest(signal, "grpc", metadata, request))
    return _MESSAGES[signal][1]()


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Message, context: Any) -> Message:
        return _grpc_store(self._receiver, "traces", request, context)


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Message, context: Any) -> Message:
        return _grpc_store(self._receiver, "metrics", request, context)


class _LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: Message, context: Any) -> Message:
        return _grpc_store(self._receiver, "logs", request, context)


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A started OTLP receiver (HTTP and gRPC on 127.0.0.1), closed after the test.

    exporter = OTLPSpanExporter(endpoint=otlp_receiver.grpc_endpoint, insecure=True)
    ...
    (span,) = otlp_receiver.wait_for_spans(1, name="chat m1")
    assert span.attributes["gen_ai.request.model"] == "m1"
    """
    receiver = OtlpReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


# --------------------------------------------------------------------------------------------
# Dead endpoints
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadEndpoint:
    """A host:port on 127.0.0.1 where nothing listens: connecting is refused at once."""

    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class BlackholeEndpoint:
    """A TCP server on 127.0.0.1 that accepts connections, reads and discards, never answers.

    Clients hang until their own timeout: use it to prove exporters and health checks give up.
    """

    def __init__(self) -> None:
        self.host = LOCALHOST
        self._listener = socket.create_server((LOCALHOST, 0), backlog=64)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._accepted = 0
        self._bytes = 0
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._serve, name="blackhole", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def connections_accepted(self) -> int:
        with self._lock:
            return self._accepted

    @property
    def bytes_received(self) -> int:
        with self._lock:
            return self._bytes

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                if sock is self._listener:
                    try:
                        conn, _ = sock.accept()
                    except BlockingIOError:
                        continue
                    conn.setblocking(False)
                    self._selector.register(conn, selectors.EVENT_READ)
                    with self._lock:
                        self._accepted += 1
                    continue
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, ConnectionError):
                    data = b""
                with self._lock:
                    self._bytes += len(data)
                if not data:  # the client hung up: forget its socket
                    self._selector.unregister(sock)
                    sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()


@pytest.fixture
def dead_endpoint_closed() -> DeadEndpoint:
    """A port on 127.0.0.1 that was reserved and closed: connections are refused.

    exporter = OTLPSpanExporter(endpoint=f"{dead_endpoint_closed.url}/v1/traces")
    """
    port = free_port()
    with socket.socket() as probe:
        refused = probe.connect_ex((LOCALHOST, port)) != 0
    assert refused, f"port {port} was expected to be closed"
    return DeadEndpoint(LOCALHOST, port)


@pytest.fixture
def dead_endpoint_blackhole() -> Iterator[BlackholeEndpoint]:
    """A TCP server on 127.0.0.1 that accepts and never answers; stopped after the test.

    exporter = OTLPSpanExporter(endpoint=f"{dead_endpoint_blackhole.url}/v1/traces",
                                timeout=1)
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert dead_endpoint_blackhole.connections_accepted >= 1
    """
    endpoint = BlackholeEndpoint()
    try:
        yield endpoint
    finally:
        endpoint.close()
