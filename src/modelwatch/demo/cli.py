"""``modelwatch demo``: a simulated AI engine under failure, watched live.

Everything runs in this process, on 127.0.0.1 only:

* a :class:`~modelwatch.testing.fake_server.FakeModelServer` serving FLAN-T5, BART and their
  backups (Hugging Face Inference API and OpenAI-compatible routes);
* the "AI engine": ``examples/engine.py`` itself (:mod:`modelwatch.demo.engine`), three
  analysis types, each behind a :class:`modelwatch.Router` with a primary and a backup model,
  called through the real ``huggingface_hub`` and ``openai`` clients;
* a bounded traffic generator (a few worker threads, one request each at a time);
* the health endpoints (:meth:`modelwatch.Health.wsgi` on a ``wsgiref`` server) and
  modelwatch's Prometheus ``/metrics`` endpoint (``configure(prometheus_port=...)``);
* a real Prometheus (:mod:`modelwatch.demo.prometheus`) scraping that endpoint every second
  and evaluating the generated alert rules (:mod:`modelwatch.demo.alerts`);
* a scripted incident (:mod:`modelwatch.demo.scenario`) whose phases are fractions of
  ``--duration``.

It shows a live table in a terminal (plain periodic lines otherwise, or with ``--no-live``)
and ends with a summary: what users saw against what the models did, time to fail over and
to recover, cost by model, and which generated alert rules Prometheus fired.
It stops by itself, or on Ctrl-C, and leaves no server or thread of its own behind.

Usage::

    modelwatch demo [--duration 60] [--no-live] [--seed 7] [--port-base 0]
                    [--otlp-endpoint http://127.0.0.1:4318] [--no-prometheus]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socketserver
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from types import FrameType
from typing import Any, Final, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog

from modelwatch import semconv
from modelwatch._config import configure, shutdown
from modelwatch.capture.cost import cost_of
from modelwatch.demo.alerts import (
    AlertWatcher,
    Verdict,
    demo_rule_options,
    not_evaluated,
    prometheus_config,
    rule_file,
)
from modelwatch.demo.engine import (
    ANALYSES,
    FAILING_MODEL,
    SLOW_MODEL,
    Engine,
    Timing,
    TrafficGenerator,
)
from modelwatch.demo.prometheus import Prometheus, PrometheusError, find_or_install
from modelwatch.demo.record import Recorder
from modelwatch.demo.scenario import Scenario, ScenarioRunner
from modelwatch.demo.view import (
    Endpoints,
    LiveView,
    PlainView,
    Style,
    default_stream,
    is_terminal,
    render_summary,
    summarize,
)
from modelwatch.errors import ConfigurationError
from modelwatch.health import Health
from modelwatch.ops.promnames import SDK, label_name, metric_name
from modelwatch.ops.rules import RuleOptions
from modelwatch.testing.fake_server import FakeModelServer

__all__ = ["main", "parse_args", "run"]

HOST: Final = "127.0.0.1"
SERVICE_NAME: Final = "modelwatch-demo"
DEFAULT_DURATION_S: Final = 60.0
MIN_DURATION_S: Final = 5.0
DEFAULT_SEED: Final = 7
TRAFFIC_WORKERS: Final = 4
#: How often the live view redraws.
FRAME_INTERVAL_S: Final = 0.25
#: How long the demo waits, at exit, for the health probe threads to leave.
THREAD_EXIT_TIMEOUT_S: Final = 5.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``modelwatch demo`` options."""
    parser = argparse.ArgumentParser(
        prog="modelwatch demo",
        description=(
            "Run a simulated AI engine (three analysis types, each behind a failover router) "
            "against a local fake model server, script an incident, and watch modelwatch "
            "handle it. Everything listens on 127.0.0.1 only."
        ),
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION_S,
        help=f"seconds to run; the scenario scales to it (default {DEFAULT_DURATION_S:g}, "
        f"at least {MIN_DURATION_S:g})",
    )
    parser.add_argument(
        "--no-live",
        action="store_true",
        help="print plain periodic lines instead of the live table (the default when "
        "stdout is not a terminal)",
    )
    parser.add_argument(
        "--otlp-endpoint",
        default=None,
        metavar="URL",
        help="also export traces and metrics over OTLP/HTTP to this collector, "
        "e.g. http://127.0.0.1:4318",
    )
    parser.add_argument(
        "--port-base",
        type=int,
        default=0,
        metavar="PORT",
        help="listen on PORT (fake model server), PORT+1 (health) and PORT+2 (/metrics); "
        "default 0: free ports chosen by the system",
    )
    parser.add_argument(
        "--no-prometheus",
        action="store_true",
        help="do not run Prometheus: no alert evaluation (by default the demo runs a real "
        "Prometheus on 127.0.0.1 with the generated rules, installing it first when it is "
        "missing and this is root)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of the fault mix and the traffic (default {DEFAULT_SEED})",
    )
    args = parser.parse_args(argv)
    if args.duration < MIN_DURATION_S:
        parser.error(f"--duration must be at least {MIN_DURATION_S:g} seconds")
    if not (args.port_base == 0 or 1024 <= args.port_base <= 65533):
        parser.error("--port-base must be 0 or within 1024..65533")
    return args


# ---------------------------------------------------------------------------- servers
class _QuietHandler(WSGIRequestHandler):
    """wsgiref's handler without the per-request stderr line."""

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request; ``server_close`` joins them (``block_on_close``)."""

    daemon_threads = False
    block_on_close = True


def _health_app(health: Health) -> Callable[..., Iterable[bytes]]:
    """Serve ``health.wsgi()`` under ``/health`` and a small index at ``/``."""
    inner = health.wsgi()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/health" or path.startswith("/health/"):
            environ = {**environ, "SCRIPT_NAME": "/health", "PATH_INFO": path[7:] or "/"}
            return inner(environ, start_response)
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
                    ],
                }
            ).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found; try /health\n"]

    return app


class _HealthServer:
    """The health endpoints on a ``wsgiref`` server in a thread."""

    def __init__(self, health: Health, port: int) -> None:
        self._server = make_server(
            HOST, port, _health_app(health), _ThreadingWSGIServer, _QuietHandler
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
def _library_logs(recorder: Recorder) -> Iterator[None]:
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
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
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


def _fetch(url: str, timeout_s: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - our own loopback URL
            body: bytes = response.read()
            return body.decode()
    except OSError:
        return None


def _metric_by(text: str, spec: semconv.MetricSpec, key: str | None) -> dict[str, float]:
    """The samples of metric ``spec`` on a ``/metrics`` page, summed by label ``key``
    (all under ``""`` when ``key`` is ``None``)."""
    from prometheus_client.parser import text_string_to_metric_families

    name = metric_name(spec, SDK)
    label = label_name(key) if key is not None else None
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != name:
                continue
            group = "" if label is None else sample.labels.get(label)
            if group is not None:
                sums[group] = sums.get(group, 0.0) + sample.value
    return sums


def _cost_from_records(recorder: Recorder) -> dict[str, float]:
    costs: dict[str, float] = {}
    for attempt in recorder.attempts():
        if attempt.error is None:
            costs[attempt.model] = costs.get(attempt.model, 0.0) + (
                cost_of(attempt.model, None, None) or 0.0
            )
    return costs


def _wait_for_threads(names: Iterable[str], timeout_s: float) -> list[str]:
    """Wait until no thread whose name starts with one of ``names`` runs; return stragglers."""
    prefixes = tuple(names)
    deadline = time.monotonic() + timeout_s
    while True:
        left = [t.name for t in threading.enumerate() if t.name.startswith(prefixes)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def _header(
    out: TextIO, args: argparse.Namespace, timing: Timing, scenario: Scenario, style: Style
) -> None:
    lines = [
        style.bold(
            f"modelwatch demo: a simulated AI engine under failure "
            f"({args.duration:g} s, seed {args.seed})"
        ),
        "  analyses, each behind a modelwatch.Router (primary -> backup):",
    ]
    for spec in ANALYSES:
        lines.append(f"    {spec.name:<24}{spec.primary.model} -> {spec.backup.model}")
    lines.append("  scenario:")
    for step in scenario.steps:
        lines.append(f"    at {step.at:5.1f}s  {step.text}")
    lines.append(style.dim(f"  {timing.describe()}"))
    out.write("\n".join(lines) + "\n")
    out.flush()


class _Demo:
    """One run: set-up, the watched run, orderly shutdown, summary."""

    def __init__(self, args: argparse.Namespace, out: TextIO, live: bool) -> None:
        self.args = args
        self.out = out
        self.live = live
        self.style = Style(live)
        self.duration = float(args.duration)
        self.timing = Timing(self.duration)
        self.scenario = Scenario(
            self.duration,
            args.seed,
            failing=FAILING_MODEL,
            slow=SLOW_MODEL,
            slow_latency_s=self.timing.slow_latency_s,
        )
        self.recorder = Recorder()
        self.stop = threading.Event()
        self._costs: tuple[dict[str, float], str] = ({}, "not read")
        self._failovers_metric: float | None = None
        self.options: RuleOptions = demo_rule_options(
            self.duration,
            latency_threshold_s=self.timing.latency_alert_s,
            hung_s=self.timing.attempt_timeout_s,
        )
        self._prometheus: Prometheus | None = None
        self._verdicts: list[Verdict] = not_evaluated(self.options, "--no-prometheus")

    def run(self) -> int:
        """Run the demo end to end; returns the exit code."""
        _header(self.out, self.args, self.timing, self.scenario, self.style)
        with _stop_on_signals(self.stop):
            with contextlib.ExitStack() as stack:
                stack.enter_context(_library_logs(self.recorder))
                engine, metrics_url = self._start_services(stack)
                self._start_run(stack, engine)
                _watch(self.out, engine, self.recorder, self.scenario, self.stop, live=self.live)
                elapsed = self.recorder.now()
            # traffic, scenario, servers and telemetry are stopped; the last /metrics page
            # was read just before the endpoint closed
            costs, source = self._costs
            stragglers = _wait_for_threads(
                ("modelwatch-demo", "modelwatch-health", "modelwatch-fake"), THREAD_EXIT_TIMEOUT_S
            )
            self._print_summary(elapsed, costs, source, stragglers, metrics_url)
        return 0

    def _start_services(
        self, stack: contextlib.ExitStack[bool | None]
    ) -> tuple[Engine, str | None]:
        """Start the model server, telemetry, engine, health and Prometheus; print the
        endpoints."""
        port = self.args.port_base
        models = [m.model for spec in ANALYSES for m in spec.models]
        server = FakeModelServer(HOST, port, models=models)
        server.start()
        stack.callback(server.stop)
        config = configure(
            service_name=SERVICE_NAME,
            prometheus_port=port + 2 if port else 0,
            otlp_endpoint=self.args.otlp_endpoint,
        )
        stack.callback(shutdown)
        metrics_url = (
            f"http://{HOST}:{config.prometheus_port}/metrics"
            if config.prometheus_port is not None
            else None
        )
        # read the last /metrics page just before the telemetry shuts down (LIFO order)
        stack.callback(self._read_metrics, metrics_url)
        engine = Engine(server, self.recorder, self.timing, seed=self.args.seed)
        stack.callback(engine.close)
        health = engine.health
        health.add(
            "fake-model-server",
            lambda: _fetch(f"{server.url}/health", self.timing.attempt_timeout_s) is not None,
            kind="dependency",
            critical=True,
            timeout_s=self.timing.attempt_timeout_s,
            interval_s=self.timing.health_interval_s,
        )
        health.start()
        stack.callback(health.stop)
        health_server = _HealthServer(health, port + 1 if port else 0)
        health_server.start()
        stack.callback(health_server.stop)
        self._start_prometheus(stack, config.prometheus_port)
        prometheus = self._prometheus.url if self._prometheus is not None else None
        alerts_note = self._verdicts[0].note if self._verdicts else ""
        endpoints = Endpoints(
            server.url,
            health_server.url,
            metrics_url,
            self.args.otlp_endpoint,
            prometheus_server=prometheus,
            alerts_note=alerts_note,
        )
        out, style = self.out, self.style
        out.write(style.bold("  endpoints (127.0.0.1 only):") + "\n")
        out.write("\n".join(endpoints.lines()) + "\n")
        out.write(style.dim("  Ctrl-C stops early; the summary is printed either way.") + "\n\n")
        out.flush()
        return engine, metrics_url

    def _start_prometheus(
        self, stack: contextlib.ExitStack[bool | None], metrics_port: int | None
    ) -> None:
        """Start a real Prometheus scraping ``/metrics`` with the generated rules, unless
        ``--no-prometheus``; when it cannot run, the alerts are "not evaluated" with why."""
        if self.args.no_prometheus:
            return
        if metrics_port is None:
            self._verdicts = not_evaluated(self.options, "no /metrics endpoint to scrape")
            return
        try:
            prometheus = Prometheus(
                find_or_install(self.out),
                prometheus_config([f"{HOST}:{metrics_port}"]),
                {"rules.yml": rule_file(self.options)},
            )
            stack.callback(prometheus.stop)
            prometheus.start()
            self.out.write(self.style.dim("  waiting for Prometheus' first scrape...") + "\n")
            self.out.flush()
            prometheus.wait_for_first_scrape()
        except PrometheusError as exc:
            self._verdicts = not_evaluated(self.options, f"no Prometheus: {exc}")
            return
        self._prometheus = prometheus

    def _start_run(self, stack: contextlib.ExitStack[bool | None], engine: Engine) -> None:
        """Start the clock, the alert watcher, the scenario and the traffic."""
        self.recorder.start_clock()
        if self._prometheus is not None:
            watcher = AlertWatcher(
                self._prometheus, self.options, self.recorder.wall_t0, self._on_alert
            )
            watcher.start()
            stack.callback(self._stop_watcher, watcher)
        runner = ScenarioRunner(self.scenario, engine.server, self.recorder)
        traffic = TrafficGenerator(engine, workers=TRAFFIC_WORKERS, seed=self.args.seed)
        runner.start()
        stack.callback(runner.stop)
        traffic.start()
        stack.callback(traffic.stop)

    def _on_alert(self, state: str, name: str, subject: str, value: str) -> None:
        detail = f" ({value})" if value else ""
        self.recorder.event("alert", f"{name} {state}: {subject}{detail}")

    def _stop_watcher(self, watcher: AlertWatcher) -> None:
        """Take the last alert poll and the verdicts, before Prometheus stops."""
        watcher.stop()
        self._verdicts = watcher.verdicts()

    def _read_metrics(self, metrics_url: str | None) -> None:
        """Read cost and failovers from the last ``/metrics`` page, before it closes."""
        text = _fetch(metrics_url) if metrics_url is not None else None
        if text is not None:
            self._costs = (
                _metric_by(text, semconv.COST, semconv.GEN_AI_REQUEST_MODEL),
                f"{metric_name(semconv.COST, SDK)} from the demo's own /metrics",
            )
            self._failovers_metric = _metric_by(text, semconv.FAILOVERS, None).get("", 0.0)
        else:
            self._costs = (
                _cost_from_records(self.recorder),
                "from the price table: no /metrics endpoint",
            )

    def _print_summary(
        self,
        elapsed: float,
        costs: dict[str, float],
        source: str,
        stragglers: list[str],
        metrics_url: str | None,
    ) -> None:
        duration, timing = self.duration, self.timing
        summary = summarize(
            self.recorder,
            self.scenario,
            elapsed_s=elapsed,
            verdicts=self._verdicts,
            cost_by_model=costs,
            cost_source=source,
        )
        summary.failovers_metric = self._failovers_metric
        if elapsed < duration:
            summary.notes.append(f"stopped early at {elapsed:.1f} s (Ctrl-C)")
        if self.recorder.internal_errors:
            summary.notes.append(
                f"modelwatch reported {self.recorder.internal_errors} internal error(s)"
            )
        if stragglers:
            summary.notes.append(f"threads still running at exit: {', '.join(stragglers)}")
        else:
            summary.notes.append(
                "shut down cleanly: model server, health"
                + (", Prometheus" if self._prometheus is not None else "")
                + (" and /metrics endpoints closed, " if metrics_url else " endpoints closed, ")
                + "demo threads stopped"
            )
        lines = render_summary(
            summary, self.scenario, timing, style=self.style, scale=3600.0 / duration
        )
        self.out.write("\n" + "\n".join(lines) + "\n")
        self.out.flush()


def run(args: argparse.Namespace, out: TextIO | None = None, *, live: bool | None = None) -> int:
    """Run the demo with parsed ``args``, writing to ``out`` (stdout); returns the exit code.

    ``live`` forces the live table on or off (default: on when ``out`` is a terminal and
    ``--no-live`` was not given).
    """
    out = out if out is not None else default_stream()
    live = (not args.no_live and is_terminal(out)) if live is None else live
    return _Demo(args, out, live).run()


def _watch(
    out: TextIO,
    engine: Engine,
    recorder: Recorder,
    scenario: Scenario,
    stop: threading.Event,
    *,
    live: bool,
) -> None:
    """Show the run until it ends or ``stop`` is set."""
    duration = scenario.duration
    if live:
        view = LiveView(out, engine, recorder, scenario, color=True)
        view.start()
        try:
            while not stop.wait(FRAME_INTERVAL_S) and recorder.now() < duration:
                view.update()
        finally:
            view.finish()
        return
    plain = PlainView(out, engine, recorder, scenario)
    every = max(1.0, duration / 12)
    next_status = every
    while not stop.wait(FRAME_INTERVAL_S) and recorder.now() < duration:
        plain.events()
        if recorder.now() >= next_status:
            plain.status()
            next_status += every
    plain.status()


#: What the demo imports beyond modelwatch's core, and the extra that installs it.
_NEEDS: Final = {
    "huggingface_hub": "huggingface",
    "openai": "openai",
    "prometheus_client": "prometheus",
    "opentelemetry.exporter.prometheus": "prometheus",
}


def _missing_extras() -> list[str]:
    import importlib.util

    missing = []
    for module, extra in _NEEDS.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a missing parent package
            found = False
        if not found and extra not in missing:
            missing.append(extra)
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    """``modelwatch demo``: run the demo; returns the exit code (0 unless misused)."""
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else 2
    missing = _missing_extras()
    if missing:
        print(
            f"modelwatch demo needs the real model clients and the Prometheus exporter: "
            f"pip install 'modelwatch[{','.join(missing)}]'",
            file=sys.stderr,
        )
        return 2
    try:
        return run(args)
    except (OSError, ConfigurationError) as exc:
        if isinstance(exc, BrokenPipeError):  # stdout closed (``| head``): already cleaned up
            with contextlib.suppress(OSError):
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the exit flush
            return 0
        print(f"modelwatch demo: cannot start: {exc}", file=sys.stderr)
        if args.port_base:
            print("  (try another --port-base, or 0 for free ports)", file=sys.stderr)
        return 1
