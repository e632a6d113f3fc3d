"""The demo's plumbing: the health endpoints' HTTP server, library logs routed into the event
log, signals, and small HTTP and thread helpers."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socketserver
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from types import FrameType
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog

from modelwatch.capture.cost import cost_of
from modelwatch.demo.record import Recorder
from modelwatch.health import Health

HOST: Final = "127.0.0.1"
SERVICE_NAME: Final = "modelwatch-demo"


# ---------------------------------------------------------------------------- servers
class QuietHandler(WSGIRequestHandler):
    """wsgiref's handler without the per-request stderr line."""

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request; ``server_close`` joins them (``block_on_close``)."""

    daemon_threads = False
    block_on_close = True


def _health_app(health: Health) -> Callable[..., Iterable[bytes]]:
    """Serve ``health.wsgi()`` under ``/health``, the status page
    (``health.status_page_wsgi()``) under ``/status`` and a small index at ``/``."""
    mounted = {"/health": health.wsgi(), "/status": health.status_page_wsgi()}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        for prefix, inner in mounted.items():
            if path == prefix or path.startswith(prefix + "/"):
                rest = path[len(prefix) :] or "/"
                return inner({**environ, "SCRIPT_NAME": prefix, "PATH_INFO": rest}, start_response)
        if path == "/":
            body = json.dumps(
                {
                    "service": SERVICE_NAME,
                    "health": [
                        "/health",
                        "/health/live",
                        "/health/ready",
                        "/health/models",
                        "/health/analysis",
                        "/health/dependencies",
                        "/health/checks/{name}",
                        "/health/history",
                    ],
                    "status page": "/status",
                }
            ).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found; try /health\n"]

    return app


class HealthServer:
    """The health endpoints on a ``wsgiref`` server in a thread."""

    def __init__(self, health: Health, port: int) -> None:
        self._server = make_server(
            HOST, port, _health_app(health), ThreadingWSGIServer, QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="modelwatch-demo-health-http",
        )

    @property
    def url(self) -> str:
        """Base URL of the health endpoints."""
        return f"http://{HOST}:{self._server.server_port}/health"

    @property
    def status_url(self) -> str:
        """URL of the status page."""
        return f"http://{HOST}:{self._server.server_port}/status"

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close the socket, join the threads."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


@contextlib.contextmanager
def library_logs(recorder: Recorder) -> Iterator[None]:
    """Route modelwatch's structlog events into the demo's event log for the run.

    The demo is the application here, so it decides where logs go: into the event pane
    instead of over the live table. The previous structlog configuration is restored after.
    """
    was_configured = structlog.is_configured()
    saved = structlog.get_config()

    def forward(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        name = str(event.get("event", ""))
        if name == "modelwatch.health.state_change":
            if event.get("previous") == "unknown" and event.get("status") == "ok":
                raise structlog.DropEvent  # a check's first result, as expected
            recorder.event(
                "health",
                f"{event.get('kind')} check {event.get('check')}: "
                f"{event.get('previous')} -> {event.get('status')}",
            )
        elif name.startswith("modelwatch.canary."):
            what = name.rsplit(".", 1)[-1].replace("rollback", "rolled back")
            figures = ""
            if "candidate_value" in event:
                figures = (
                    f": candidate {event['candidate_value']:.4g} against stable "
                    f"{event.get('stable_value', 0.0):.4g}"
                )
            recorder.event(
                "canary",
                f"{event.get('router')}: version {event.get('version')} {what} "
                f"({event.get('reason')}{figures}, after {event.get('candidate_calls')} "
                f"candidate calls)",
            )
        elif name == "modelwatch.budget.exceeded":
            recorder.event(
                "budget",
                f"{event.get('budget')} spent: ${event.get('spent_usd', 0.0):.4f} of "
                f"${event.get('limit_usd', 0.0):.4f} (enforce={event.get('enforce')})",
            )
        elif name == "modelwatch.internal_error":
            recorder.internal_errors += 1
            recorder.event(
                "internal",
                f"modelwatch internal error at {event.get('site')}: "
                f"{event.get('error')} {event.get('message')}",
            )
        elif not name.startswith("modelwatch.circuit."):  # breaker listeners cover those
            recorder.event("log", name)
        raise structlog.DropEvent

    structlog.configure(processors=[forward], cache_logger_on_first_use=False)
    # the OpenTelemetry SDK logs export trouble (a dead --otlp-endpoint) with stdlib logging
    otel = logging.getLogger("opentelemetry")
    handler = _EventHandler(recorder)
    otel.addHandler(handler)
    propagate, otel.propagate = otel.propagate, False
    try:
        yield
    finally:
        otel.removeHandler(handler)
        otel.propagate = propagate
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


class _EventHandler(logging.Handler):
    """A stdlib logging handler that turns records into demo events (at most one a second)."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(logging.WARNING)
        self._recorder = recorder
        self._last = -1.0
        self._skipped = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Log ``record`` as an event, unless one was logged less than a second ago."""
        now = self._recorder.now()
        if now - self._last < 1.0:
            self._skipped += 1
            return
        self._last = now
        more = f" (+{self._skipped} similar)" if self._skipped else ""
        self._skipped = 0
        self._recorder.event("log", f"{record.name}: {record.getMessage()[:160]}{more}")


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C (and SIGTERM) set ``stop`` instead of raising, so shutdown is orderly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def fetch(url: str, timeout_s: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - our own loopback URL
            body: bytes = response.read()
            return body.decode()
    except OSError:
        return None


def wait_for_threads(names: Iterable[str], timeout_s: float) -> list[str]:
    """Wait until no thread whose name starts with one of ``names`` runs; return stragglers."""
    prefixes = tuple(names)
    deadline = time.monotonic() + timeout_s
    while True:
        left = [t.name for t in threading.enumerate() if t.name.startswith(prefixes)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def cost_from_records(recorder: Recorder) -> dict[str, float]:
    costs: dict[str, float] = {}
    for attempt in recorder.attempts():
        if attempt.error is None:
            costs[attempt.model] = costs.get(attempt.model, 0.0) + (
                cost_of(attempt.model, None, None) or 0.0
            )
    return costs
