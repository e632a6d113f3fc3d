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
import dataclasses
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Sequence
from typing import Any, Final, TextIO

from modelwatch import semconv
from modelwatch._config import configure, shutdown
from modelwatch.demo._services import (
    HOST,
    SERVICE_NAME,
    HealthServer,
    cost_from_records,
    fetch,
    library_logs,
    stop_on_signals,
    wait_for_threads,
)
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
    CANARY_ANALYSIS,
    CANARY_MODEL,
    FAILING_MODEL,
    SLOW_MODEL,
    Engine,
    Serving,
    Timing,
    TrafficGenerator,
)
from modelwatch.demo.prometheus import Prometheus, PrometheusError, find_or_install
from modelwatch.demo.readings import MetricsReadings, read_history, read_pages
from modelwatch.demo.record import Recorder
from modelwatch.demo.scenario import Scenario, ScenarioRunner
from modelwatch.demo.spans import time_routes
from modelwatch.demo.summary import render_summary, summarize
from modelwatch.demo.view import (
    Endpoints,
    Style,
    default_stream,
    is_terminal,
    watch,
)
from modelwatch.demo.workers import Workers
from modelwatch.errors import ConfigurationError
from modelwatch.ops.promnames import SDK, metric_name
from modelwatch.ops.rules import RuleOptions
from modelwatch.testing.fake_server import FakeModelServer

__all__ = ["main", "parse_args", "run"]

DEFAULT_DURATION_S: Final = 60.0
MIN_DURATION_S: Final = 5.0
DEFAULT_SEED: Final = 7
TRAFFIC_WORKERS: Final = 4
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
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run the engine as N worker processes (each with its own /metrics, found by "
        "Prometheus through file_sd), users' requests going to each in turn (default 1: "
        "the engine runs in the demo's own process)",
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
    if not 1 <= args.workers <= 8:
        parser.error("--workers must be within 1..8")
    if not (args.port_base == 0 or 1024 <= args.port_base <= 65533):
        parser.error("--port-base must be 0 or within 1024..65533")
    return args


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
            canary=(CANARY_ANALYSIS, CANARY_MODEL),
        )
        self.recorder = Recorder()
        self.stop = threading.Event()
        self._costs: tuple[dict[str, float], str] = ({}, "not read")
        self._failovers_metric: float | None = None
        self._readings: MetricsReadings | None = None
        self._history: list[dict[str, Any]] | None = None
        self._status_url: str | None = None
        self.options: RuleOptions = demo_rule_options(
            self.duration,
            latency_threshold_s=self.timing.latency_alert_s,
            hung_s=self.timing.attempt_timeout_s,
        )
        self._prometheus: Prometheus | None = None
        self._calls_by_instance: dict[str, float] = {}
        self._verdicts: list[Verdict] = not_evaluated(self.options, "--no-prometheus")

    def run(self) -> int:
        """Run the demo end to end; returns the exit code."""
        _header(self.out, self.args, self.timing, self.scenario, self.style)
        with stop_on_signals(self.stop):
            with contextlib.ExitStack() as stack:
                stack.enter_context(library_logs(self.recorder))
                engine, metrics_url = self._start_services(stack)
                self._start_run(stack, engine)
                watch(self.out, engine, self.recorder, self.scenario, self.stop, live=self.live)
                elapsed = self.recorder.now()
            # traffic, scenario, servers and telemetry are stopped; the last /metrics page
            # was read just before the endpoint closed
            costs, source = self._costs
            stragglers = wait_for_threads(
                ("modelwatch-demo", "modelwatch-health", "modelwatch-fake"), THREAD_EXIT_TIMEOUT_S
            )
            self._print_summary(elapsed, costs, source, stragglers, metrics_url)
        return 0

    def _start_services(
        self, stack: contextlib.ExitStack[bool | None]
    ) -> tuple[Serving, str | None]:
        """Start the model server, telemetry, engine, health and Prometheus; print the
        endpoints."""
        port = self.args.port_base
        models = [m.model for spec in ANALYSES for m in spec.models] + [CANARY_MODEL]
        server = FakeModelServer(HOST, port, models=models)
        server.start()
        stack.callback(server.stop)
        config = configure(
            service_name=SERVICE_NAME,
            prometheus_port=port + 2 if port else 0,
            otlp_endpoint=self.args.otlp_endpoint,
        )
        stack.callback(shutdown)
        timer = time_routes(self.recorder)  # the routers' own spans time the users' calls
        if timer is not None:
            stack.callback(timer.stop)
        metrics_url = (
            f"http://{HOST}:{config.prometheus_port}/metrics"
            if config.prometheus_port is not None
            else None
        )
        if self.args.workers > 1:
            return self._start_workers(stack, server), metrics_url
        engine = Engine(server, self.recorder, self.timing, seed=self.args.seed)
        stack.callback(engine.close)
        # read the last /metrics page once traffic stopped, before the budgets close (LIFO)
        stack.callback(self._read_metrics, [metrics_url] if metrics_url else [])
        health = engine.health
        health.add(
            "fake-model-server",
            lambda: fetch(f"{server.url}/health", self.timing.attempt_timeout_s) is not None,
            kind="dependency",
            critical=True,
            timeout_s=self.timing.attempt_timeout_s,
            interval_s=self.timing.health_interval_s,
        )
        health.start()
        stack.callback(health.stop)
        health_server = HealthServer(health, port + 1 if port else 0)
        health_server.start()
        stack.callback(health_server.stop)
        stack.callback(self._read_history, health_server.url)
        self._status_url = health_server.status_url
        targets = [f"{HOST}:{config.prometheus_port}"] if config.prometheus_port else None
        self._start_prometheus(stack, targets)
        self._print_endpoints(
            Endpoints(server.url, health_server.url, metrics_url, self.args.otlp_endpoint)
        )
        return engine, metrics_url

    def _start_workers(
        self, stack: contextlib.ExitStack[bool | None], server: FakeModelServer
    ) -> Workers:
        """``--workers N``: the engine as N processes, discovered by Prometheus via file_sd."""
        sd_dir = tempfile.mkdtemp(prefix="modelwatch-demo-sd-")
        stack.callback(shutil.rmtree, sd_dir, True)
        count, seed = self.args.workers, self.args.seed
        workers = Workers(count, server, self.recorder, self.timing, seed=seed, sd_dir=sd_dir)
        stack.callback(workers.stop)
        workers.start()
        stack.callback(self._read_metrics, workers.metrics_urls)
        stack.callback(self._read_history, f"{workers.urls[0]}/health")
        self._status_url = f"{workers.urls[0]}/status"
        self._start_prometheus(stack, None, sd_dir=sd_dir, count=self.args.workers)
        self._print_endpoints(
            Endpoints(server.url, f"{workers.urls[0]}/health", None, None),
            workers=workers.urls,
        )
        return workers

    def _print_endpoints(self, endpoints: Endpoints, workers: list[str] | None = None) -> None:
        prometheus = self._prometheus.url if self._prometheus is not None else None
        endpoints = dataclasses.replace(
            endpoints,
            prometheus_server=prometheus,
            alerts_note=self._verdicts[0].note if self._verdicts else "",
            workers=tuple(workers or ()),
            status_page=self._status_url,
        )
        out, style = self.out, self.style
        out.write(style.bold("  endpoints (127.0.0.1 only):") + "\n")
        out.write("\n".join(endpoints.lines()) + "\n")
        out.write(style.dim("  Ctrl-C stops early; the summary is printed either way.") + "\n\n")
        out.flush()

    def _start_prometheus(
        self,
        stack: contextlib.ExitStack[bool | None],
        targets: list[str] | None,
        *,
        sd_dir: str | None = None,
        count: int = 1,
    ) -> None:
        """Start a real Prometheus scraping ``/metrics`` (``targets``, or the ``file_sd``
        files in ``sd_dir``) with the generated rules, unless ``--no-prometheus``; when it
        cannot run, the alerts are "not evaluated" with why."""
        if self.args.no_prometheus:
            return
        if not targets and sd_dir is None:
            self._verdicts = not_evaluated(self.options, "no /metrics endpoint to scrape")
            return
        try:
            prometheus = Prometheus(
                find_or_install(self.out),
                prometheus_config(targets or [], sd_dir=sd_dir),
                {"rules.yml": rule_file(self.options)},
            )
            stack.callback(prometheus.stop)
            prometheus.start()
            self.out.write(self.style.dim("  waiting for Prometheus' first scrape...") + "\n")
            self.out.flush()
            prometheus.wait_for_first_scrape(count=count)
        except PrometheusError as exc:
            self._verdicts = not_evaluated(self.options, f"no Prometheus: {exc}")
            return
        self._prometheus = prometheus

    def _start_run(self, stack: contextlib.ExitStack[bool | None], engine: Serving) -> None:
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
        """Take the last alert poll, the verdicts and the calls Prometheus counted per
        instance, before Prometheus stops."""
        watcher.stop()
        self._verdicts = watcher.verdicts()
        self._calls_by_instance = watcher.calls_by_instance()

    def _read_metrics(self, metrics_urls: list[str]) -> None:
        """Read cost, failovers, hedges and budgets from the last ``/metrics`` page of every
        process serving the engine, before they close."""
        self._readings = read_pages(metrics_urls)
        if self._readings is not None:
            where = "the demo's own /metrics"
            if self._readings.pages > 1:
                where = f"{self._readings.pages} workers' /metrics"
            self._costs = (self._readings.costs, f"{metric_name(semconv.COST, SDK)} from {where}")
            self._failovers_metric = self._readings.failovers
        else:
            self._costs = (
                cost_from_records(self.recorder),
                "from the price table: no /metrics endpoint",
            )

    def _read_history(self, health_url: str) -> None:
        """Read the health history (the status page's incidents) before health closes."""
        self._history = read_history(health_url)

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
            timing=timing,
            readings=self._readings,
            history=self._history,
            processes=self.args.workers,
        )
        summary.status_url = self._status_url
        summary.failovers_metric = self._failovers_metric
        if elapsed < duration:
            summary.notes.append(f"stopped early at {elapsed:.1f} s (Ctrl-C)")
        if self._calls_by_instance:
            per = ", ".join(f"{k} {v:.0f}" for k, v in sorted(self._calls_by_instance.items()))
            summary.notes.append(
                f"Prometheus counted {sum(self._calls_by_instance.values()):.0f} users' model "
                f"calls over {len(self._calls_by_instance)} instance(s) at its last scrape "
                f"({per}); the demo recorded {summary.user_attempts}"
            )
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


def main(argv: Sequence[str] | None = None) -> int:
    """``modelwatch demo``: run the demo; returns the exit code (0 unless misused)."""
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else 2
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
