"""``modelwatch demo --workers N``: the engine as N worker processes behind a round-robin client.

Each worker is a fresh interpreter (``multiprocessing`` spawn) running ``examples/engine.py``'s
WSGI app on its own port, with ``configure(prometheus_port=0, prometheus_sd_dir=...)``: it serves
its own ``/metrics`` and registers it for Prometheus' ``file_sd`` discovery, as a fleet of
uvicorn or gunicorn workers does (``docs/deployment.md``). The demo's users call the workers over
HTTP in turn (a load balancer's round robin); every model call, breaker transition and event of
every worker reaches the demo's recorder through a queue, so the summary counts all of them, and
Prometheus sums the workers' series over ``instance``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import multiprocessing
import queue
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from multiprocessing.process import BaseProcess
from types import FrameType, SimpleNamespace
from typing import Any, Final

from modelwatch.demo._background import Background
from modelwatch.demo._services import (
    HOST,
    SERVICE_NAME,
    QuietHandler,
    ThreadingWSGIServer,
    library_logs,
)
from modelwatch.demo.engine import ANALYSES, Engine, Timing, example_engine, serving
from modelwatch.demo.record import (
    AttemptRecord,
    Event,
    Recorder,
    RequestRecord,
    RouteRecord,
    TransitionRecord,
)
from modelwatch.demo.spans import time_routes

__all__ = ["ServedBy", "Workers"]

#: the response header a worker names the model that answered in
ServedBy: Final = "X-Modelwatch-Served-By"
_START_TIMEOUT_S: Final = 60.0


class _QueueRecorder(Recorder):
    """A worker's recorder: every record goes to the demo, stamped in absolute monotonic time
    (the parent subtracts its own start; ``CLOCK_MONOTONIC`` is one clock for all processes)."""

    def __init__(self, out: Any, index: int) -> None:
        super().__init__()
        self._out = out
        self._index = index
        self._t0 = 0.0

    def start_clock(self) -> None:
        """Keep absolute time."""

    def attempt(self, token: int, record: AttemptRecord) -> None:
        """Send a finished attempt."""
        super().attempt(token, record)
        self._out.put((self._index, record))

    def transition(self, record: TransitionRecord) -> None:
        """Send a breaker transition."""
        self._out.put((self._index, record))

    def route(self, record: RouteRecord) -> None:
        """Send a router call's span times."""
        self._out.put((self._index, record))

    def event(self, kind: str, text: str, at: float | None = None) -> Event:
        """Send an event line."""
        item = Event(self.now() if at is None else at, kind, text)
        self._out.put((self._index, item))
        return item


def _served_by_app(inner: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """``inner`` with a response header naming the model whose answer it returned."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        served: list[str] = []

        def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, (ServedBy, served[-1] if served else "")])

        with serving(served):
            return inner(environ, respond)

    return app


def worker_main(index: int, settings: dict[str, Any], out: Any) -> None:
    """One worker process: the engine, its health and its HTTP app, until SIGTERM."""
    from modelwatch._config import configure

    stop = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the demo stops its workers itself
    config = configure(
        service_name=SERVICE_NAME, prometheus_port=0, prometheus_sd_dir=settings["sd_dir"]
    )
    timing = Timing(settings["duration"])
    recorder = _QueueRecorder(out, index)
    time_routes(recorder)
    with library_logs(recorder):  # the worker's library logs become the demo's event lines
        _serve(
            index,
            settings,
            recorder=recorder,
            timing=timing,
            out=out,
            stop=stop,
            metrics_port=config.prometheus_port,
        )


def _serve(
    index: int,
    settings: dict[str, Any],
    *,
    recorder: Recorder,
    timing: Timing,
    out: Any,
    stop: threading.Event,
    metrics_port: int | None,
) -> None:
    from modelwatch._config import shutdown

    server = SimpleNamespace(url=settings["url"], openai_base_url=settings["openai_url"])
    engine = Engine(
        server,  # type: ignore[arg-type]
        recorder,
        timing,
        seed=settings["seed"],
        processes=settings["processes"],
        budget_suffix=f" w{index + 1}",
    )
    engine.health.start()
    inner = example_engine().make_app(engine.routers, engine.health)
    from wsgiref.simple_server import make_server

    httpd = make_server(HOST, 0, _served_by_app(inner), ThreadingWSGIServer, QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    out.put(("ready", index, httpd.server_port, metrics_port))
    try:
        stop.wait()
    finally:
        httpd.shutdown()
        thread.join()
        httpd.server_close()
        engine.health.stop()
        engine.close()
        shutdown()
        out.put(("stopped", index))


class Workers:
    """N worker processes, the queue their records come back on, and a round-robin client.

    It stands where :class:`~modelwatch.demo.engine.Engine` stands for the traffic generator
    and the views (``analyses``, ``analyze_for_user``, ``circuit_states``).
    """

    def __init__(
        self, count: int, server: Any, recorder: Recorder, timing: Timing, *, seed: int, sd_dir: str
    ) -> None:
        self.server = server
        self.recorder = recorder
        self.timing = timing
        self.analyses = {a.name: a for a in ANALYSES}
        self._prompts: dict[str, str] = example_engine().PROMPTS
        context = multiprocessing.get_context("spawn")
        self._queue: Any = context.Queue()
        settings = {
            "url": server.url,
            "openai_url": server.openai_base_url,
            "duration": timing.duration,
            "seed": seed,
            "sd_dir": sd_dir,
            "processes": count,
        }
        self._procs: list[BaseProcess] = [
            context.Process(
                target=worker_main, args=(i, settings, self._queue), name=f"modelwatch-demo-w{i}"
            )
            for i in range(count)
        ]
        self.urls: list[str] = []
        self.metrics_urls: list[str] = []
        self._next = itertools.cycle(range(count))
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], dict[int, str]] = {}
        self._drain = Background("modelwatch-demo-workers-drain", self._run)

    def start(self) -> None:
        """Start the workers and wait until each serves.

        Raises:
            OSError: a worker did not start in time.
        """
        for proc in self._procs:
            proc.start()
        ports: dict[int, tuple[int, int | None]] = {}
        deadline = time.monotonic() + _START_TIMEOUT_S
        while len(ports) < len(self._procs):
            try:
                item = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise OSError("the demo's engine workers did not start in time") from None
            if isinstance(item, tuple) and item[0] == "ready":
                ports[item[1]] = (item[2], item[3])
        for i in sorted(ports):
            app, metrics = ports[i]
            self.urls.append(f"http://{HOST}:{app}")
            if metrics is not None:
                self.metrics_urls.append(f"http://{HOST}:{metrics}/metrics")
        self._drain.start()

    def stop(self) -> None:
        """Stop the workers (SIGTERM: each shuts down in order) and the queue reader."""
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            proc.join(15)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._drain.stop()
        self._queue.close()
        self._queue.join_thread()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                item = self._queue.get(timeout=0.1)
            except (queue.Empty, OSError, ValueError):
                continue
            if isinstance(item, tuple) and len(item) == 2:
                self._receive(*item)

    def _receive(self, index: int, item: Any) -> None:
        """A worker's record, moved onto the demo's timeline."""
        rec = self.recorder
        t0 = rec.start_monotonic
        if isinstance(item, AttemptRecord):
            moved = dataclasses.replace(item, start=item.start - t0, end=item.end - t0)
            rec.attempt(rec.attempt_started(item.model), moved)
        elif isinstance(item, TransitionRecord):
            rec.transition(dataclasses.replace(item, at=item.at - t0))
            with self._lock:
                self._states.setdefault((item.analysis, item.model), {})[index] = item.to_state
        elif isinstance(item, RouteRecord):  # wall-clock times: the same in every process
            rec.route(item)
        elif isinstance(item, Event):
            rec.event(item.kind, f"w{index + 1}: {item.text}", at=item.at - t0)

    def circuit_states(self) -> dict[tuple[str, str], str]:
        """Each backend's breaker state: the worst any worker reported last (open, then
        half-open, then closed)."""
        rank = {"closed": 0, "half_open": 1, "open": 2}
        states = {(a.name, m.model): "closed" for a in ANALYSES for m in a.models}
        with self._lock:
            for key, by_worker in self._states.items():
                states[key] = max(by_worker.values(), key=lambda state: rank.get(state, 0))
        return states

    def analyze_for_user(self, analysis: str, text: str) -> RequestRecord:
        """One user request, to the next worker in turn, over HTTP."""
        with self._lock:
            url = self.urls[next(self._next)]
        rec = self.recorder
        primary = self.analyses[analysis].primary.model
        body = json.dumps({"text": text}).encode()
        request = urllib.request.Request(  # noqa: S310 - the worker's loopback URL
            f"{url}/analyze/{analysis}", data=body, method="POST"
        )
        start = rec.now()
        served: str | None = None
        error: str | None = None
        try:
            with urllib.request.urlopen(request, timeout=self.timing.call_timeout_s + 2) as reply:  # noqa: S310 - loopback
                reply.read()
                served = reply.headers.get(ServedBy) or None
        except urllib.error.HTTPError as exc:
            error = "unavailable" if exc.code == 503 else "_OTHER"
            with contextlib.suppress(OSError):
                exc.read()
        except OSError:
            error = "unavailable"
        record = RequestRecord(start, rec.now(), analysis, served, error, primary)
        rec.request(record)
        return record
