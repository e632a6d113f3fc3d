"""The registry: probe outcomes, timeouts, damping, scoring, scheduling, telemetry, events.

Time-based logic runs on a fake clock; only probes that hang use real (short) timeouts.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from modelwatch import semconv
from modelwatch.errors import ConfigurationError
from modelwatch.health import Health, HealthReport, synthetic
from modelwatch.health.results import CheckResult
from modelwatch.testing import capture

MakeHealth = Callable[..., Health]


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait for a probe thread to finish its work (not for fake time to pass)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


def sync_and_async(fn: Callable[[], Any], *, make_async: bool) -> Callable[[], Any]:
    """The same probe, as a plain function or as ``async def`` (mirrored suites)."""
    if not make_async:
        return fn

    async def probe() -> Any:
        await asyncio.sleep(0)
        return fn()

    return probe


SHAPES = pytest.mark.parametrize("make_async", [False, True], ids=["sync", "async"])


# ---------------------------------------------------------------------------- outcomes
def test_a_check_is_unknown_until_its_first_result(make_health: MakeHealth) -> None:
    health = make_health()
    health.add("redis", probe=lambda: True, kind="dependency")

    report = health.report()

    check = report.check("redis")
    assert check is not None
    assert (check.status, check.latency_s, check.checked_at, check.error) == (
        "unknown",
        None,
        None,
        None,
    )
    assert report.status == "degraded"  # not confirmed healthy yet
    assert report.score == 0.5


@SHAPES
def test_passing_probe_reports_ok_with_its_latency(
    make_health: MakeHealth, clock: Any, make_async: bool
) -> None:
    health = make_health(clock=clock)

    def ping() -> bool:
        clock.advance(0.25)  # the probe "takes" 250 ms of fake time
        return True

    health.add("m", probe=sync_and_async(ping, make_async=make_async), critical=True)

    report = health.run_once()

    check = report.check("m")
    assert check is not None
    assert check.status == "ok"
    assert check.latency_s == pytest.approx(0.25)
    assert check.error is None
    assert check.checked_at is not None
    assert check.checked_at.timestamp() == pytest.approx(clock.time())
    assert (report.status, report.score, report.http_status) == ("ok", 1.0, 200)


@SHAPES
@pytest.mark.parametrize(
    ("returns", "status", "error"),
    [
        (None, "ok", None),
        ("ok", "ok", None),
        (1, "ok", None),
        (False, "down", "probe returned False"),
        ("down", "down", "probe reported down"),
        ("degraded", "degraded", "probe reported degraded"),
        (0, "down", "probe returned int"),
    ],
)
def test_what_a_probe_returns_decides_its_status(
    make_health: MakeHealth, make_async: bool, returns: Any, status: str, error: str | None
) -> None:
    health = make_health()
    health.add("x", probe=sync_and_async(lambda: returns, make_async=make_async))

    check = health.run_once().check("x")

    assert check is not None
    assert (check.status, check.error) == (status, error)


@SHAPES
def test_raising_probe_is_down_with_a_scrubbed_one_line_error(
    make_health: MakeHealth, make_async: bool
) -> None:
    secret = "hf_abcdefghijklmnopqrstuvwx"

    def boom() -> None:
        raise ConnectionError(
            f"GET https://user:pw@api.example/models failed\nAuthorization: Bearer {secret}\n"
            + "x" * 500
        )

    health = make_health()
    health.add("m", probe=sync_and_async(boom, make_async=make_async))

    check = health.run_once().check("m")

    assert check is not None
    assert check.status == "down"
    assert check.error is not None
    assert check.error.startswith("ConnectionError: GET https://[REDACTED]@api.example")
    assert secret not in check.error
    assert "pw@" not in check.error
    assert "\n" not in check.error
    assert len(check.error) <= 200


def test_sync_hung_probe_is_down_at_its_timeout_never_piles_up_and_recovers(
    make_health: MakeHealth,
) -> None:
    gate = threading.Event()
    calls: list[int] = []

    def stuck() -> bool:
        calls.append(1)
        gate.wait(10.0)
        return True

    health = make_health(flap_threshold=1)
    health.add("m", probe=stuck, timeout_s=0.05, critical=True)

    first = health.run_once()
    check = first.check("m")
    assert check is not None
    assert check.status == "down"
    assert check.error == "timeout: no result within 0.05 s"
    assert check.latency_s == pytest.approx(0.05)
    assert first.status == "down"

    # still stuck: fails again without starting a second probe (no second thread)
    second = health.run_once().check("m")
    assert second is not None
    assert second.status == "down"
    assert second.error is not None
    assert second.error.startswith("timeout: previous probe still running after")
    assert len(calls) == 1

    gate.set()  # the stuck probe finally returns: too late to count, but the check is free
    wait_until(lambda: health._checks["m"].run is None)
    assert health.report().check("m").status == "down"  # type: ignore[union-attr]

    recovered = health.run_once()
    assert len(calls) == 2
    assert recovered.check("m").status == "ok"  # type: ignore[union-attr]
    assert recovered.status == "ok"


def test_async_hung_probe_is_cancelled_at_its_timeout_and_recovers(
    make_health: MakeHealth,
) -> None:
    cancelled = threading.Event()
    hang = True

    async def probe() -> bool:
        if hang:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return True

    health = make_health(flap_threshold=1)
    health.add("m", probe=probe, timeout_s=0.05)

    check = health.run_once().check("m")
    assert check is not None
    assert (check.status, check.error) == ("down", "timeout: no result within 0.05 s")
    assert cancelled.wait(2.0), "the timed-out coroutine was not cancelled"

    hang = False
    wait_until(lambda: health._checks["m"].run is None)
    assert health.run_once().check("m").status == "ok"  # type: ignore[union-attr]


def test_hung_probes_in_the_background_keep_threads_bounded(make_health: MakeHealth) -> None:
    release = threading.Event()
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def counted(name: str, hang: bool) -> Callable[[], bool]:
        def probe() -> bool:
            with lock:
                calls[name] = calls.get(name, 0) + 1
            if hang:
                release.wait(10.0)
            return True

        return probe

    before = set(threading.enumerate())
    health = make_health(flap_threshold=1, probe_threads=2)
    for i in range(4):
        health.add(f"hang{i}", probe=counted(f"hang{i}", True), timeout_s=0.02, interval_s=0.02)
    for i in range(3):
        health.add(f"fine{i}", probe=counted(f"fine{i}", False), timeout_s=0.5, interval_s=0.02)
    try:
        with health:
            wait_until(lambda: all(calls.get(f"fine{i}", 0) >= 5 for i in range(3)))
            wait_until(
                lambda: all(
                    (c := health.report().check(f"hang{i}")) is not None
                    and c.error is not None
                    and "still running" in c.error
                    for i in range(4)
                )
            )
            report = health.report()
            workers = [
                t
                for t in set(threading.enumerate()) - before
                if t.name.startswith("modelwatch-health-")
                and t.name not in ("modelwatch-health-scheduler", "modelwatch-health-loop")
            ]
        assert all(calls[f"hang{i}"] == 1 for i in range(4))  # never re-entered while stuck
        assert {c.name: c.status for c in report.checks if c.name.startswith("hang")} == {
            f"hang{i}": "down" for i in range(4)
        }
        # probe_threads working threads, plus one per hung check: 2 + 4
        assert health._pool is None  # stop() closed it
        assert 4 < len(workers) <= 6
    finally:
        release.set()


# ---------------------------------------------------------------------------- damping
def test_flapping_is_damped_and_state_changes_are_logged(make_health: MakeHealth) -> None:
    results = iter([True, False, False, True, False, False, False, True, True, True])
    health = make_health(flap_threshold=3)
    health.add("m", probe=lambda: next(results), kind="model")

    with capture_logs() as logs:
        seen = [health.run_once().check("m").status for _ in range(10)]  # type: ignore[union-attr]

    assert seen == ["ok", "ok", "ok", "ok", "ok", "ok", "down", "down", "down", "ok"]
    changes = [
        (e["previous"], e["status"])
        for e in logs
        if e["event"] == "modelwatch.health.state_change" and e["check"] == "m"
    ]
    assert changes == [("unknown", "ok"), ("ok", "down"), ("down", "ok")]
    down = next(e for e in logs if e.get("status") == "down")
    assert down["log_level"] == "warning"
    assert down["kind"] == "model"


def test_a_failing_probe_shows_its_error_while_damping_still_says_ok(
    make_health: MakeHealth,
) -> None:
    results = iter([True, False])
    health = make_health(flap_threshold=2)
    health.add("m", probe=lambda: next(results))
    health.run_once()

    check = health.run_once().check("m")

    assert check is not None
    assert (check.status, check.error) == ("ok", "probe returned False")


def test_flap_threshold_per_check_overrides_the_registry(make_health: MakeHealth) -> None:
    health = make_health(flap_threshold=5)
    answers = {"a": iter([True, False]), "b": iter([True, False])}
    health.add("a", probe=lambda: next(answers["a"]), flap_threshold=1)
    health.add("b", probe=lambda: next(answers["b"]))
    health.run_once()

    report = health.run_once()

    assert report.check("a").status == "down"  # type: ignore[union-attr]
    assert report.check("b").status == "ok"  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- scoring
def _result(name: str, status: Any, *, critical: bool = False, weight: float = 1.0) -> CheckResult:
    return CheckResult(name=name, kind="model", status=status, critical=critical, weight=weight)


@pytest.mark.parametrize(
    ("checks", "status", "score"),
    [
        ([], "ok", 1.0),
        ([_result("a", "ok"), _result("b", "ok", critical=True)], "ok", 1.0),
        ([_result("a", "ok"), _result("b", "down", critical=True)], "down", 0.5),
        ([_result("a", "ok", weight=9), _result("b", "down")], "degraded", 0.9),
        # a degraded check only matters through the score
        ([_result("a", "ok", weight=19), _result("b", "degraded")], "ok", 0.975),
        ([_result("a", "ok", weight=2), _result("b", "degraded", weight=2)], "degraded", 0.75),
        (
            [_result("a", "ok", weight=2), _result("b", "down"), _result("c", "degraded")],
            "degraded",
            0.625,
        ),
        ([_result("a", "down", weight=0), _result("b", "ok", weight=0)], "degraded", 0.5),
    ],
)
def test_overall_status_and_weighted_score(
    checks: list[CheckResult], status: str, score: float
) -> None:
    report = HealthReport.build(checks, checked_at=_now(), degraded_below=0.9)

    assert (report.status, report.score) == (status, score)
    assert report.http_status == (503 if status == "down" else 200)


def _now() -> Any:
    from datetime import datetime, timezone

    return datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_report_by_kind_scores_only_that_kind(make_health: MakeHealth) -> None:
    health = make_health()
    health.add("m", probe=lambda: False, kind="model", critical=True)
    health.add("redis", probe=lambda: True, kind="dependency")
    health.add("code_review", probe=lambda: True, kind="analysis")
    health.run_once()

    deps = health.report(kind="dependency")

    assert [c.name for c in deps.checks] == ["redis"]
    assert (deps.status, deps.score) == ("ok", 1.0)
    assert health.report(kind="model").status == "down"
    assert health.report().status == "down"


# ---------------------------------------------------------------------------- scheduling
def _settled(health: Health, name: str, count: int) -> Callable[[], bool]:
    return lambda: health._checks[name].run is None and calls_of(health, name) >= count


def calls_of(health: Health, name: str) -> int:
    return getattr(health, "_test_calls", {}).get(name, 0)


def counting(health: Health, name: str, answer: Callable[[], Any]) -> Callable[[], Any]:
    calls: dict[str, int] = health.__dict__.setdefault("_test_calls", {})

    def probe() -> Any:
        calls[name] = calls.get(name, 0) + 1
        return answer()

    return probe


def test_probes_run_every_interval_and_faster_while_failing(
    make_health: MakeHealth, clock: Any
) -> None:
    healthy = True
    health = make_health(clock=clock, flap_threshold=1)
    health.add("m", probe=counting(health, "m", lambda: healthy), interval_s=30.0)
    assert health._checks["m"].down_interval_s == 6.0  # a fifth of the interval

    assert health.run_pending() == 1  # first probe at once (no jitter)
    wait_until(_settled(health, "m", 1))
    clock.advance(29.9)
    assert health.run_pending() == 0
    clock.advance(0.2)
    assert health.run_pending() == 1
    wait_until(_settled(health, "m", 2))

    healthy = False
    clock.advance(30.0)
    assert health.run_pending() == 1
    wait_until(_settled(health, "m", 3))
    assert health.report().check("m").status == "down"  # type: ignore[union-attr]
    clock.advance(5.9)
    assert health.run_pending() == 0
    clock.advance(0.2)  # 6 s after the failure, not 30
    assert health.run_pending() == 1
    wait_until(_settled(health, "m", 4))


def test_intervals_are_jittered_within_bounds(clock: Any) -> None:
    health = Health(clock=clock, jitter=0.1, rng=random.Random(7))
    try:
        health.add("m", probe=counting(health, "m", lambda: True), interval_s=100.0)
        started = health.run_pending()  # the first probe is spread over jitter * 10 s at most
        clock.advance(1.0)
        assert started + health.run_pending() == 1
        wait_until(_settled(health, "m", 1))
        gaps = []
        for _ in range(20):
            start = clock.monotonic()
            while health.run_pending() == 0:
                clock.advance(0.5)
            gaps.append(clock.monotonic() - start)
            wait_until(_settled(health, "m", len(gaps) + 1))
        assert all(89.5 <= gap <= 110.5 for gap in gaps), gaps
        assert len({round(g) for g in gaps}) > 3  # really spread, not a constant
    finally:
        health.stop()


def test_overdue_probe_is_declared_down_by_the_scheduler_on_the_fake_clock(
    make_health: MakeHealth, clock: Any
) -> None:
    gate = threading.Event()
    health = make_health(clock=clock, flap_threshold=1)
    health.add("m", probe=lambda: gate.wait(10.0), timeout_s=5.0, interval_s=30.0)
    try:
        assert health.run_pending() == 1
        wait_until(lambda: health._checks["m"].run.started is not None)  # type: ignore[union-attr]
        clock.advance(4.9)
        health.run_pending()
        assert health.report().check("m").status == "unknown"  # type: ignore[union-attr]
        clock.advance(0.2)
        health.run_pending()
        check = health.report().check("m")
        assert check is not None
        assert (check.status, check.latency_s) == ("down", 5.0)
        # while stuck, each due run fails again (at the fast interval) and starts nothing
        clock.advance(6.5)
        assert health.run_pending() == 0
        assert "still running after 11.6 s" in (health.report().check("m").error or "")  # type: ignore[union-attr]
    finally:
        gate.set()


def test_background_probing_starts_and_stops(make_health: MakeHealth) -> None:
    health = make_health()
    health.add("a", probe=lambda: True, interval_s=0.05)

    async def aprobe() -> bool:
        return True

    health.add("b", probe=aprobe, kind="analysis", interval_s=0.05)
    assert not health.running
    with health:
        assert health.running
        health.start()  # idempotent
        wait_until(lambda: health.report().status == "ok")
    assert not health.running
    assert not any(t.name == "modelwatch-health-scheduler" for t in threading.enumerate())
    assert not any(t.name == "modelwatch-health-loop" for t in threading.enumerate())


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"kind": "database"}, ValueError),
        ({"timeout_s": 0}, ValueError),
        ({"timeout_s": float("inf")}, ValueError),
        ({"timeout_s": "5"}, ConfigurationError),
        ({"interval_s": -1.0}, ValueError),
        ({"down_interval_s": 0.0}, ValueError),
        ({"weight": -1.0}, ValueError),
        ({"weight": float("nan")}, ValueError),
        ({"flap_threshold": 0}, ValueError),
    ],
)
def test_invalid_arguments_are_rejected(
    make_health: MakeHealth, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    health = make_health()
    with pytest.raises(error):
        health.add("m", probe=lambda: True, **kwargs)
    assert "m" not in health


def test_names_must_be_unique_and_probes_callable(make_health: MakeHealth) -> None:
    health = make_health()
    health.add("m", probe=lambda: True)
    with pytest.raises(ValueError, match="already exists"):
        health.add("m", probe=lambda: True)
    with pytest.raises(ValueError, match="non-empty name"):
        health.add(" ", probe=lambda: True)
    with pytest.raises(ConfigurationError, match="callable"):
        health.add("n", probe="ping")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="nope"):
        health.run_once(["nope"])
    assert health.names == ["m"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"flap_threshold": 0},
        {"degraded_below": 1.5},
        {"jitter": 1.0},
        {"probe_threads": 0},
        {"probe_threads": True},
    ],
)
def test_invalid_registry_settings_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Health(**kwargs)


# ---------------------------------------------------------------------------- synthetic
@SHAPES
def test_synthetic_transaction_reports_latency_and_checks_the_answer(
    make_health: MakeHealth, clock: Any, make_async: bool
) -> None:
    def review(code: str, *, style: str) -> str:
        clock.advance(1.5)
        return f"{style}: looks fine" if code else ""

    fn: Callable[..., Any] = review
    if make_async:

        async def areview(code: str, *, style: str) -> str:
            return review(code, style=style)

        fn = areview
    health = make_health(clock=clock)
    health.add(
        "code_review",
        probe=synthetic(fn, "def f(): pass", style="pep8", expect=lambda r: "fine" in r),
        kind="analysis",
    )
    health.add("empty", probe=synthetic(fn, "", style="pep8", expect=bool), kind="analysis")

    health.run_once(["code_review"])  # one at a time: both would advance the shared clock
    report = health.run_once(["empty"])

    assert report.check("code_review").status == "ok"  # type: ignore[union-attr]
    assert report.check("code_review").latency_s == pytest.approx(1.5)  # type: ignore[union-attr]
    assert report.check("empty").status == "down"  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- telemetry
def test_probe_durations_and_status_gauge_are_recorded(make_health: MakeHealth, clock: Any) -> None:
    health = make_health(clock=clock)

    def slow() -> bool:
        clock.advance(0.5)
        return True

    def broken() -> bool:
        raise TimeoutError("upstream read timed out")

    health.add("tm-ok", probe=slow, kind="dependency")
    health.add("tm-bad", probe=broken, kind="model")
    health.add("tm-new", probe=lambda: True, kind="analysis")
    health.add("tm-false", probe=lambda: False, kind="dependency")
    with capture() as cap:
        health.run_once(["tm-ok", "tm-bad", "tm-false"])

        ok = {semconv.HEALTH_CHECK: "tm-ok", semconv.HEALTH_KIND: "dependency"}
        bad = {semconv.HEALTH_CHECK: "tm-bad", semconv.HEALTH_KIND: "model"}
        duration = semconv.HEALTH_CHECK_DURATION.name
        assert cap.metric_count(duration, ok) == 1
        assert cap.metric_sum(duration, ok) == pytest.approx(0.5)
        [point] = cap.metric_points(duration, bad)
        assert point.attributes[semconv.ERROR_TYPE] == "timeout"
        assert semconv.ERROR_TYPE not in cap.metric_points(duration, ok)[0].attributes
        [false] = cap.metric_points(duration, {semconv.HEALTH_CHECK: "tm-false"})
        assert false.attributes[semconv.ERROR_TYPE] == "unavailable"

        status = semconv.HEALTH_STATUS.name
        assert [p.value for p in cap.metric_points(status, ok)] == [1.0]
        assert [p.value for p in cap.metric_points(status, bad)] == [0.0]
        # never-probed checks are not on the gauge
        assert cap.metric_points(status, {semconv.HEALTH_CHECK: "tm-new"}) == []


def test_readiness_gauge_follows_ready(make_health: MakeHealth, clock: Any) -> None:
    import gc

    from modelwatch.health import registry

    gc.collect()  # registries of earlier tests, no longer referenced, leave the WeakSet
    health = make_health(clock=clock, flap_threshold=1)
    up = {"db": True}

    def db() -> bool:
        return up["db"]

    health.add("rd-db", probe=db, kind="dependency", critical=True)
    others = [h for h in registry._live if h is not health]
    for other in others:  # still-referenced registries must not decide this test
        registry._live.discard(other)
    try:
        ready = semconv.HEALTH_READY.name
        with capture() as cap:
            health.run_once()
            assert [p.value for p in cap.metric_points(ready)] == [1.0]
            up["db"] = False
            health.run_once()
            assert health.report().http_status == 503
            assert [p.value for p in cap.metric_points(ready)] == [0.0]
    finally:
        for other in others:
            registry._live.add(other)


@settings(max_examples=40, deadline=None)
@given(
    threshold=st.integers(min_value=1, max_value=4),
    results=st.lists(st.sampled_from(["ok", "degraded", "down"]), min_size=1, max_size=12),
)
def test_damping_changes_state_only_after_n_consecutive_results_the_other_way(
    threshold: int, results: list[str]
) -> None:
    answers = iter(results)
    health = Health(flap_threshold=threshold, jitter=0.0)
    health.add("m", probe=lambda: next(answers))
    try:
        seen = [health.run_once().check("m").status for _ in results]  # type: ignore[union-attr]
    finally:
        health.stop()

    # an independent statement of the rule: the first result counts at once; afterwards the
    # status becomes the latest result exactly when the last ``threshold`` results all
    # differ from the status before them (counted since the last change)
    expected, current, since_change = [], results[0], []
    for result in results:
        if not expected:
            expected.append(current)
            continue
        since_change.append(result)
        tail = since_change[-threshold:]
        if len(tail) == threshold and all(r != current for r in tail):
            current, since_change = result, []
        elif result == current:
            since_change = []
        expected.append(current)
    assert seen == expected
