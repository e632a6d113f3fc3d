"""Shared pieces of the benchmarks: local OTLP endpoints, the offline guard, statistics, RSS.

Nothing here talks to anything but 127.0.0.1.

- :class:`OtlpSink` is a *live* OTLP/HTTP receiver: it reads each export request whole and
  answers ``200`` with an empty protobuf body, keeping only counters (so a million spans cost it
  no memory).
- :class:`BlackholeEndpoint` accepts TCP connections and never answers (a hung collector).
- :func:`closed_port` returns a port on 127.0.0.1 that nothing listens on (a dead collector).
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"


# ----------------------------------------------------------------------------- endpoints
class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
        sink: OtlpSink = self.server.sink  # type: ignore[attr-defined]
        with sink.lock:
            sink.requests[self.path] = sink.requests.get(self.path, 0) + 1
            sink.bytes += length
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


class OtlpSink:
    """A live OTLP/HTTP endpoint on 127.0.0.1 that accepts and discards every export."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.bytes = 0
        self._server = ThreadingHTTPServer((LOOPBACK, 0), _SinkHandler)
        self._server.daemon_threads = True
        self._server.sink = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="otlp-sink", daemon=True
        )
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class BlackholeEndpoint:
    """Accepts connections on 127.0.0.1 and never reads or answers: exporters hang to timeout."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((LOOPBACK, 0))
        self._sock.listen(128)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="blackhole", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._sock.settimeout(0.5)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._held.append(conn)  # held open, never read, never answered

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self._sock.getsockname()[1]}"

    def close(self) -> None:
        self._stop.set()
        for conn in self._held:
            conn.close()
        self._sock.close()


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------------------- offline guard
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}
blocked_connections: list[str] = []


def _is_local(host: object) -> bool:
    if not isinstance(host, str):
        return False
    return host in _LOCAL_HOSTS or host.startswith("127.")


def install_offline_guard() -> None:
    """Refuse (and record) any connection or DNS lookup that is not for the loopback address.

    Patches ``socket.socket.connect``/``connect_ex`` and ``socket.getaddrinfo``: none of them is
    on the measured call path, so the guard costs the measurement nothing. The benchmark reports
    ``blocked_connections`` so "ran offline" is shown, not assumed.
    """
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    original_getaddrinfo = socket.getaddrinfo

    def check(address: Any) -> None:
        if isinstance(address, tuple) and address and not _is_local(address[0]):
            blocked_connections.append(str(address[0]))
            raise ConnectionRefusedError(f"benchmark is offline: refused {address[0]}")

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check(address)
        return original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check(address)
        return original_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_local(host if isinstance(host, str) else str(host)):
            blocked_connections.append(str(host))
            raise socket.gaierror(f"benchmark is offline: refused lookup of {host}")
        return original_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo


# ----------------------------------------------------------------------------- statistics
def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (``q`` in 0..1) of a non-empty sequence."""
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = q * (len(data) - 1)
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def machine_description() -> dict[str, Any]:
    """CPU model, core count, load and Python of this machine, for the results header."""
    import platform

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "modelwatch_commit": _git_head(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_avg": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _git_head() -> str:
    """The commit the benchmarked modelwatch is at, with "+dirty" if src/ has local changes."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}+dirty" if dirty else head or "unknown"


def fmt_us(ns: float) -> str:
    """Nanoseconds as microseconds with two decimals."""
    return f"{ns / 1000:.2f}"


def discard_exporters() -> tuple[Any, Any]:
    """A span exporter and a metric exporter that accept everything and send nothing."""
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class DiscardSpans(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class DiscardMetrics(MetricExporter):
        def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kw: Any) -> Any:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kw: Any) -> None:
            return None

    return DiscardSpans(), DiscardMetrics()
