"""What the summary's hedge, budget and status page lines read: the routers' ``route`` spans,
``/metrics`` pages, the health history; and the scenario's hang on a real fake server."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

import modelwatch
from modelwatch.capture._telemetry import use_providers
from modelwatch.capture.origin import probing
from modelwatch.demo.engine import FAILING_MODEL, SLOW_MODEL
from modelwatch.demo.readings import (
    MetricsReadings,
    budget_figures,
    hedge_figures,
    incidents_from_history,
    read_pages,
)
from modelwatch.demo.record import Recorder, RouteRecord, TransitionRecord
from modelwatch.demo.scenario import Scenario
from modelwatch.demo.spans import HedgeLog, RouteTimer
from modelwatch.health.results import iso
from modelwatch.resilience import hooks
from modelwatch.testing.fake_server import FakeModelServer

PAGE = """\
# TYPE modelwatch_hedges_total counter
modelwatch_hedges_total{modelwatch_router="code_review",modelwatch_hedge_outcome="won"} 7.0
modelwatch_hedges_total{modelwatch_router="code_review",modelwatch_hedge_outcome="cancelled"} 2.0
modelwatch_hedges_total{modelwatch_router="other",modelwatch_hedge_outcome="won"} 50.0
# TYPE modelwatch_failovers_total counter
modelwatch_failovers_total{modelwatch_router="tech_recommendation",FROM_TO,reason="budget"} 30.0
modelwatch_failovers_total{modelwatch_router="tech_recommendation",FROM_TO,reason="unavailable"} 4.0
# TYPE modelwatch_budget_used gauge
modelwatch_budget_used{modelwatch_budget="google/flan-t5-xl w1"} 1.25
""".replace("FROM_TO", 'from="google/flan-t5-xl",to="gpt-4o-mini"')


@pytest.fixture
def pages() -> list[str]:
    """Two workers' /metrics pages, served over HTTP as the demo reads them."""
    return [PAGE, PAGE.replace(" w1", " w2").replace("} 1.25", "} 0.75")]


def test_pages_are_read_and_added_up_over_workers(pages: list[str]) -> None:
    with FakeMetrics(pages) as urls:
        readings = read_pages([*urls, "http://127.0.0.1:9/metrics"])  # one never answers
    assert readings is not None
    assert readings.pages == 2
    assert readings.hedges["code_review"] == {"won": 14.0, "cancelled": 4.0}
    assert readings.failovers == 68.0
    assert readings.budget_failovers == {"tech_recommendation": {"gpt-4o-mini": 60.0}}
    assert readings.budget_used == {"google/flan-t5-xl w1": 1.25, "google/flan-t5-xl w2": 0.75}
    assert read_pages(["http://127.0.0.1:9/metrics"]) is None


def test_budget_figures_add_each_workers_share_and_take_the_first_exceeded_event() -> None:
    recorder = Recorder()
    recorder.event("budget", "w2: google/flan-t5-xl w2 spent: $0.0240 of $0.0240", at=4.5)
    recorder.event("budget", "w1: google/flan-t5-xl w1 spent: $0.0240 of $0.0240", at=3.0)
    recorder.event("budget", "w1: some/other-model w1 spent", at=1.0)
    readings = MetricsReadings(
        budget_used={"google/flan-t5-xl w1": 1.25, "google/flan-t5-xl w2": 0.75},
        budget_failovers={"tech_recommendation": {"gpt-4o-mini": 60.0}},
    )
    figures = budget_figures(
        readings,
        recorder,
        model="google/flan-t5-xl",
        router="tech_recommendation",
        limit_usd=0.02,
        processes=2,
    )
    assert figures is not None
    assert figures.limit_usd == pytest.approx(0.04)
    assert figures.spent_usd == pytest.approx(0.04)  # (1.25 + 0.75) x 0.02
    assert figures.spent_at == 3.0
    assert figures.moved == {"gpt-4o-mini": 60.0}
    nothing = budget_figures(
        MetricsReadings(), Recorder(), model="m", router="r", limit_usd=1.0, processes=1
    )
    assert nothing is not None
    assert (nothing.spent_usd, nothing.spent_at, nothing.moved) == (None, None, {})


def test_hedge_figures_time_the_users_calls_of_the_hang_from_their_spans() -> None:
    recorder = Recorder()
    t0 = recorder.wall_t0

    def route(start: float, seconds: float, router: str = "code_review", origin: str = "user"):
        recorder.route(RouteRecord(t0 + start, t0 + start + seconds, router, origin, True))  # type: ignore[arg-type]

    for i in range(9):
        route(2.0 + i * 0.1, 0.2)  # hedged answers
    route(2.95, 0.8)  # one that waited the attempt timeout
    route(1.9, 5.0)  # before the hang
    route(3.0, 5.0)  # after it
    route(2.5, 5.0, router="tech_recommendation")
    route(2.5, 5.0, origin="probe")  # a health check
    readings = MetricsReadings(hedges={"code_review": {"won": 9.0, "lost": 1.0}})
    figures = hedge_figures(
        readings, recorder, router="code_review", window=(2.0, 3.0), attempt_timeout_s=0.8
    )
    assert figures is not None
    assert (figures.started, figures.won, figures.calls) == (10.0, 9.0, 10)
    assert figures.median_s == pytest.approx(0.2)
    assert figures.p99_s == pytest.approx(0.8)
    assert figures.opened_at is None
    # the hung model's breaker opened at 2.45 s: the calls before it met the hung primary
    for at, model, to in ((2.45, "hung", "open"), (2.2, "other", "open"), (1.0, "hung", "open")):
        recorder.transition(TransitionRecord(at, "code_review", model, "closed", to, "x"))
    split = hedge_figures(
        readings,
        recorder,
        router="code_review",
        window=(2.0, 3.0),
        attempt_timeout_s=0.8,
        hung="hung",
    )
    assert split is not None
    assert (split.opened_at, split.closed_calls, split.calls) == (2.45, 5, 10)
    assert split.closed_p99_s == pytest.approx(0.2)
    assert hedge_figures(None, recorder, router="x", window=(0, 1), attempt_timeout_s=1) is None


def test_incidents_are_put_on_the_demo_timeline() -> None:
    t0 = 1_800_000_000.0

    def at(seconds: float) -> str | None:
        return iso(datetime.fromtimestamp(t0 + seconds, tz=timezone.utc))

    raw = [
        {"check": "b", "state": "degraded", "start": at(9.5), "end": None, "cause": "x"},
        {"check": "a", "state": "down", "start": at(2.25), "end": at(7.5), "cause": None},
    ]
    first, second = incidents_from_history(raw, t0)
    assert (first.check, first.state, first.cause) == ("a", "down", None)
    assert first.start == pytest.approx(2.25, abs=1e-3)
    assert first.end == pytest.approx(7.5, abs=1e-3)
    assert (second.check, second.end, second.cause) == ("b", None, "x")


def test_route_spans_of_a_real_router_are_recorded_with_their_origin() -> None:
    recorder = Recorder()
    tracer_provider = TracerProvider()
    timer = RouteTimer(recorder)
    tracer_provider.add_span_processor(timer)

    def fails(_: str) -> str:
        raise ConnectionError("down")

    router = modelwatch.Router(
        "code_review",
        [modelwatch.Backend(lambda text: text, model="m1", provider="p")],
        isolate_sync=False,
    )
    broken = modelwatch.Router(
        "broken", [modelwatch.Backend(fails, model="m2", provider="p")], isolate_sync=False
    )
    try:
        with use_providers(tracer_provider, MeterProvider()):
            router.call("user")
            with probing():
                router.call("health check")
            with pytest.raises(modelwatch.AllBackendsFailedError):
                broken.call("x")
            timer.stop()
            router.call("not recorded")
    finally:
        router.close()
        broken.close()
    routes = recorder.routes()
    assert [(r.router, r.origin, r.ok) for r in routes] == [
        ("code_review", "user", True),
        ("code_review", "probe", True),
        ("broken", "user", False),
    ]
    assert all(0 <= r.duration < 5 for r in routes)
    assert abs(routes[0].start_wall - time.time()) < 60


def test_the_hang_holds_requests_then_the_errors_begin_without_a_healthy_answer() -> None:
    """The hang step holds the failing model's requests past any timeout; the next step
    queues its faults before letting requests through, so the first answer is the first
    scripted fault (a 429), never a success."""
    sc = Scenario(10, 7, failing=FAILING_MODEL, slow=SLOW_MODEL, slow_latency_s=0.5)
    hang, errors = sc.steps[0], sc.steps[1]
    assert (hang.at, errors.at) == (sc.incident_at, sc.errors_at) == (2.0, 3.0)
    with FakeModelServer(models=[FAILING_MODEL]) as server:
        url = server.model_url(FAILING_MODEL)
        with httpx.Client(timeout=0.3) as client:
            assert client.post(url, json={"inputs": "x"}).status_code == 200
            hang.action(server)
            with pytest.raises(httpx.ReadTimeout):
                client.post(url, json={"inputs": "x"})
            errors.action(server)
            statuses = [_status(client, url) for _ in range(8)]
    # exactly the scripted faults, in order (a hang: no answer), then "loading" until healed
    expected: list[int | None] = []
    for fault in sc.faults:
        code = {"rate_limit": 429, "loading": 503, "hang": None}[fault.fault]
        expected += [code] * (fault.times or 8)
    assert statuses == expected[:8]
    assert statuses[0] == 429


def _status(client: httpx.Client, url: str) -> int | None:
    try:
        return client.post(url, json={"inputs": "x"}).status_code
    except httpx.ReadTimeout:
        return None


class FakeMetrics:
    """Serve each page at its own ``/metrics`` URL on 127.0.0.1."""

    def __init__(self, pages: list[str]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from threading import Thread

        self._servers = []
        for page in pages:
            body = page.encode()

            class Handler(BaseHTTPRequestHandler):
                def do_GET(self, body: bytes = body) -> None:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, *_: object) -> None:
                    pass

            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self._servers.append((server, Thread(target=server.serve_forever, daemon=True)))

    def __enter__(self) -> list[str]:
        for server, thread in self._servers:
            thread.start()
        return [f"http://127.0.0.1:{s.server_port}/metrics" for s, _ in self._servers]

    def __exit__(self, *_: object) -> None:
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join()


def test_hedges_become_event_lines_the_first_then_a_count_at_most_so_often() -> None:
    recorder = Recorder()
    log = HedgeLog(recorder, every_s=3600.0)
    hedge = hooks.Hedge("code_review", "google/flan-t5-large", "meta-llama/Llama", 0.3)
    try:
        for _ in range(3):
            hooks.emit(hedge)
        hooks.emit(hooks.Failover("code_review", "a", "b", "timeout"))  # not a hedge
        hooks.emit(hooks.Hedge("other", "m1", "m2", 0.5))
    finally:
        log.close()
    hooks.emit(hedge)  # after close: not logged
    lines = [(e.kind, e.text) for e in recorder.events()[0]]
    assert lines == [
        (
            "hedge",
            "code_review: google/flan-t5-large had not answered after 0.30 s: "
            "meta-llama/Llama races it (the first answer wins)",
        ),
        ("hedge", "other: m1 had not answered after 0.50 s: m2 races it (the first answer wins)"),
    ]
    again = HedgeLog(recorder, every_s=0.0)  # no wait: every hedge after the first is counted
    try:
        hooks.emit(hedge)
        hooks.emit(hedge)
    finally:
        again.close()
    assert recorder.events()[0][-1].text == "code_review: 1 more call(s) hedged on meta-llama/Llama"
