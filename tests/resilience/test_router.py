"""Router policy with plain-Python backends: failover, surfacing, retries, deadlines,
budgets, ordering, status and telemetry. A manual clock: nothing sleeps to pass time."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from modelwatch import semconv
from modelwatch._clock import ManualClock
from modelwatch.capture._telemetry import telemetry as current
from modelwatch.errors import AllBackendsFailedError, CircuitOpenError, ConfigurationError
from modelwatch.resilience.ordering import LeastLatency, Weighted
from modelwatch.resilience.policy import BreakerPolicy, RetryPolicy
from modelwatch.resilience.router import Backend, BackendStatus, Router

from ._fakes import HTTPError, Scripted, classify

NO_JITTER = BreakerPolicy(jitter=0.0)


def make_router(
    clock: ManualClock, *fns: Any, retry: RetryPolicy | None = None, **kw: Any
) -> Router:
    backends = [Backend(fn, model=f"m{i}", provider="test") for i, fn in enumerate(fns)]
    kw.setdefault("breaker", NO_JITTER)
    return Router("r", backends, classify=classify, clock=clock, retry=retry, **kw)


# ---------------------------------------------------------------------- happy path
def test_happy_path_is_the_attempt_span_alone_with_the_routers_attributes(
    clock: ManualClock, telemetry: Any
) -> None:
    primary, backup = Scripted("p", "answer"), Scripted("b")
    router = make_router(clock, primary, backup)
    tracer = current().tracer  # the host's spans, on the same provider
    with tracer.start_as_current_span("request") as request:
        assert router.call("doc", 3) == "answer"
    assert primary.calls == [("doc", 3)]
    assert backup.calls == []
    assert telemetry.spans("route r") == []  # docs/router.md, "Trace shape"
    (attempt,) = telemetry.spans("chat m0")
    assert attempt.kind == SpanKind.CLIENT
    assert attempt.parent is not None
    assert attempt.parent.span_id == request.get_span_context().span_id
    assert attempt.attributes[semconv.MODELWATCH_ROUTER] == "r"
    assert attempt.attributes[semconv.MODELWATCH_ATTEMPT] == 1
    assert telemetry.counter(semconv.FAILOVERS.name) == 0


def test_a_failover_after_a_failed_first_attempt_starts_the_route_span_at_the_calls_start(
    clock: ManualClock, telemetry: Any
) -> None:
    primary, backup = Scripted("p", ConnectionRefusedError("refused")), Scripted("b", "backup")
    router = make_router(clock, primary, backup)
    tracer = current().tracer  # the host's spans, on the same provider
    with tracer.start_as_current_span("request") as request:
        assert router.call("x") == "backup"
    parent = request.get_span_context().span_id
    (route,) = telemetry.spans("route r")
    (first,) = telemetry.spans("chat m0")
    (second,) = telemetry.spans("chat m1")
    assert route.kind == SpanKind.INTERNAL
    assert route.parent is not None
    assert route.parent.span_id == parent
    # the first attempt ran before the route span existed: its sibling, linked from it
    assert first.parent is not None
    assert first.parent.span_id == parent
    ((link,),) = [route.links]
    assert link.context.span_id == first.context.span_id
    assert link.attributes == {semconv.MODELWATCH_ATTEMPT: 1}
    # the later attempt is its child; the route span covers the whole call
    assert second.parent is not None
    assert second.parent.span_id == route.context.span_id
    assert route.start_time <= first.start_time <= first.end_time <= second.start_time
    assert second.end_time <= route.end_time
    assert route.status.status_code == StatusCode.UNSET


def test_a_first_attempt_that_fails_the_call_leaves_a_route_span_with_the_error(
    clock: ManualClock, telemetry: Any
) -> None:
    router = make_router(clock, Scripted("p", HTTPError(400)), Scripted("b"))
    with pytest.raises(HTTPError):
        router.call()
    (route,) = telemetry.spans("route r")
    (attempt,) = telemetry.spans("chat m0")
    assert [link.context.span_id for link in route.links] == [attempt.context.span_id]
    assert route.start_time <= attempt.start_time
    assert route.status.status_code == StatusCode.ERROR


def test_a_success_that_closes_a_breaker_has_the_route_span_with_the_transition(
    clock: ManualClock, telemetry: Any
) -> None:
    primary = Scripted("p", "ok")
    router = make_router(
        clock, primary, breaker=BreakerPolicy(open_s=5.0, close_after=1, jitter=0.0)
    )
    router.breaker("m0").force_open()
    clock.advance(6.0)  # open time over: the next call is the half-open trial
    telemetry.exporter.clear()
    assert router.call() == "ok"
    (route,) = telemetry.spans("route r")
    states = [
        e.attributes[semconv.TO] for e in route.events if e.name == semconv.EVENT_STATE_CHANGE
    ]
    assert states[-1] == "closed"
    (attempt,) = telemetry.spans("chat m0")
    assert attempt.parent is not None
    assert attempt.parent.span_id == route.context.span_id


def test_a_slow_success_has_a_route_span_linked_to_its_attempt(
    clock: ManualClock, telemetry: Any
) -> None:
    router = make_router(clock, Scripted("p", "ok"), breaker=BreakerPolicy(slow_call_s=1e-9))
    assert router.call() == "ok"
    (route,) = telemetry.spans("route r")
    (attempt,) = telemetry.spans("chat m0")
    assert [link.context.span_id for link in route.links] == [attempt.context.span_id]
    assert route.start_time <= attempt.start_time


def test_backend_sees_its_attempt_span_as_current(clock: ManualClock, telemetry: Any) -> None:
    import modelwatch

    seen = []
    router = make_router(clock, lambda: seen.append(modelwatch.current_call()) or "ok")
    router.call()
    assert seen[0] is not None
    assert seen[0].model == "m0"


# ---------------------------------------------------------------------- failover
def test_refused_primary_fails_over_without_sleeping(clock: ManualClock, telemetry: Any) -> None:
    primary, backup = Scripted("p", ConnectionRefusedError("refused")), Scripted("b", "backup")
    router = make_router(clock, primary, backup)
    assert router.call("x") == "backup"
    assert clock.sleeps == []
    spans = telemetry.spans()
    attempts = [s for s in spans if s.name.startswith("chat ")]
    assert [(s.name, s.attributes[semconv.MODELWATCH_ATTEMPT]) for s in attempts] == [
        ("chat m0", 1),
        ("chat m1", 2),
    ]
    assert attempts[0].attributes[semconv.ERROR_TYPE] == semconv.ERROR_UNAVAILABLE
    (route,) = telemetry.spans("route r")
    assert [e.name for e in route.events] == [semconv.EVENT_FAILOVER]
    assert route.events[0].attributes[semconv.REASON] == semconv.ERROR_UNAVAILABLE
    assert (
        telemetry.counter(
            semconv.FAILOVERS.name,
            **{semconv.FROM: "m0", semconv.TO: "m1", semconv.REASON: "unavailable"},
        )
        == 1
    )
    ((attrs, point),) = telemetry.points(semconv.FAILOVER_DURATION.name)
    assert point.count == 1
    assert attrs[semconv.FROM] == "m0"


def test_open_primary_is_skipped_without_a_call(clock: ManualClock, telemetry: Any) -> None:
    primary, backup = Scripted("p"), Scripted("b", "backup")
    router = make_router(clock, primary, backup)
    router.breaker("m0").force_open()
    assert router.call() == "backup"
    assert primary.calls == []
    (route,) = telemetry.spans("route r")
    assert [e.name for e in route.events] == [semconv.EVENT_REJECTED, semconv.EVENT_FAILOVER]
    assert route.events[1].attributes[semconv.REASON] == "circuit_open"
    assert len(telemetry.spans("chat m0")) == 0


def test_dead_primary_costs_three_attempts_then_none(clock: ManualClock) -> None:
    primary = Scripted("p", default=lambda: ConnectionResetError("reset"))
    backup = Scripted("b", default="ok")
    router = make_router(clock, primary, backup)
    for _ in range(20):
        assert router.call() == "ok"
    assert len(primary.calls) == 3
    assert len(backup.calls) == 20


@pytest.mark.parametrize("status", [401, 404, 500, 503])
def test_failover_kinds(clock: ManualClock, status: int) -> None:
    router = make_router(clock, Scripted("p", HTTPError(status)), Scripted("b", "ok"))
    assert router.call() == "ok"


def test_bad_request_surfaces_the_same_exception_without_failover(
    clock: ManualClock, telemetry: Any
) -> None:
    error = HTTPError(400)
    backup = Scripted("b")
    router = make_router(clock, Scripted("p", error), backup)
    with pytest.raises(HTTPError) as info:
        router.call()
    assert info.value is error
    assert backup.calls == []
    assert router.breaker("m0").state == "closed"
    (route,) = telemetry.spans("route r")
    assert route.status.status_code == StatusCode.ERROR
    assert route.attributes[semconv.ERROR_TYPE] == semconv.ERROR_BAD_REQUEST


def test_unclassified_errors_surface_by_default_and_fail_over_when_asked(
    clock: ManualClock,
) -> None:
    bug = KeyError("oops")
    router = make_router(clock, Scripted("p", bug), Scripted("b", "ok"))
    with pytest.raises(KeyError) as info:
        router.call()
    assert info.value is bug
    router.close()  # its name is free for the next one
    router = make_router(
        clock,
        Scripted("p", KeyError("oops")),
        Scripted("b", "ok"),
        retry=RetryPolicy(failover_on_other=True),
    )
    assert router.call() == "ok"


def test_all_failing_raises_with_every_attempt_chained_to_the_last(clock: ManualClock) -> None:
    last = HTTPError(500)
    router = make_router(
        clock,
        Scripted("p", ConnectionRefusedError("x")),
        Scripted("b", last),
        retry=RetryPolicy(max_retries=0),
    )
    with pytest.raises(AllBackendsFailedError) as info:
        router.call()
    err = info.value
    assert err.__cause__ is last
    assert [(a.model, a.error_kind) for a in err.attempts] == [
        ("m0", "unavailable"),
        ("m1", "unavailable"),
    ]
    assert all(a.duration_s >= 0 for a in err.attempts)
    assert err.router == "r"


def test_every_breaker_open_and_far_away_fails_fast_with_retry_after(clock: ManualClock) -> None:
    router = make_router(clock, Scripted("p"), Scripted("b"), timeout_s=5.0)
    router.breaker("m0").force_open()
    router.breaker("m1").force_open()
    with pytest.raises(AllBackendsFailedError) as info:
        router.call()
    assert clock.sleeps == []  # 10 s to reopen does not fit a 5 s deadline
    assert info.value.retry_after_s == pytest.approx(10.0)
    assert isinstance(info.value.__cause__, CircuitOpenError)
    assert [a.error_kind for a in info.value.attempts] == ["circuit_open", "circuit_open"]


def test_every_breaker_open_tries_the_one_that_reopens_soonest(clock: ManualClock) -> None:
    primary, backup = Scripted("p"), Scripted("b", "ok")
    router = make_router(clock, primary, backup)
    router.breaker("m0").force_open()
    clock.advance(4.0)
    router.breaker("m1").force_open()  # reopens 4 s after m0
    assert router.call() == "p-ok"
    assert clock.sleeps == [pytest.approx(6.0)]
    assert backup.calls == []


# ---------------------------------------------------------------------- retries
def test_rate_limited_primary_is_benched_for_its_retry_after(clock: ManualClock) -> None:
    primary = Scripted("p", HTTPError(429, retry_after_s=20.0))
    backup = Scripted("b", default="ok")
    router = make_router(clock, primary, backup)
    assert router.call() == "ok"
    assert router.call() == "ok"
    assert len(primary.calls) == 1  # benched, not called again
    (status,) = [s for s in router.status() if s.model == "m0"]
    assert status.retry_after_s == pytest.approx(20.0)
    assert status.last_error == semconv.ERROR_RATE_LIMITED
    assert router.breaker("m0").state == "closed"  # 429 never counts against the breaker
    clock.advance(20.0)
    assert router.call() == "p-ok"


def test_same_backend_is_retried_after_retry_after_when_no_other_can(
    clock: ManualClock, telemetry: Any
) -> None:
    only = Scripted("p", HTTPError(429, retry_after_s=2.0), "second time lucky")
    router = make_router(clock, only)
    assert router.call() == "second time lucky"
    assert clock.sleeps == [2.0]
    (route,) = telemetry.spans("route r")
    assert semconv.EVENT_RETRY in [e.name for e in route.events]
    attempts = [s.attributes[semconv.MODELWATCH_ATTEMPT] for s in telemetry.spans("chat m0")]
    assert attempts == [1, 2]


def test_no_retry_when_retry_after_exceeds_the_deadline(clock: ManualClock) -> None:
    only = Scripted("p", HTTPError(429, retry_after_s=40.0))
    router = make_router(clock, only, timeout_s=30.0)
    with pytest.raises(AllBackendsFailedError) as info:
        router.call()
    assert clock.sleeps == []
    assert info.value.retry_after_s == pytest.approx(40.0)


def test_no_retry_beyond_max_wait(clock: ManualClock) -> None:
    only = Scripted("p", HTTPError(429, retry_after_s=120.0))
    router = make_router(clock, only, timeout_s=None)
    with pytest.raises(AllBackendsFailedError):
        router.call()
    assert clock.sleeps == []


def test_auth_errors_are_never_retried(clock: ManualClock) -> None:
    only = Scripted("p", HTTPError(401), "never")
    router = make_router(clock, only)
    with pytest.raises(AllBackendsFailedError):
        router.call()
    assert len(only.calls) == 1


def test_unavailable_retries_back_off_and_stop_at_max_retries(clock: ManualClock) -> None:
    only = Scripted("p", default=lambda: HTTPError(503))
    router = make_router(clock, only, breaker=BreakerPolicy(jitter=0.0, consecutive_failures=10))
    with pytest.raises(AllBackendsFailedError) as info:
        router.call()
    assert clock.sleeps == [0.5, 1.0]
    assert len(only.calls) == 3
    assert len(info.value.attempts) == 3


def test_retry_budget_bounds_extra_traffic_in_an_outage(clock: ManualClock) -> None:
    only = Scripted("p", default=lambda: HTTPError(503))
    router = make_router(
        clock,
        only,
        breaker=BreakerPolicy(jitter=0.0, consecutive_failures=10_000, min_calls=10_000),
        retry=RetryPolicy(max_retries=1, budget_ratio=0.1, budget_min_per_s=0.0),
    )
    for _ in range(100):
        with pytest.raises(AllBackendsFailedError):
            router.call()
    retries = len(only.calls) - 100
    # 10 tokens to start, then 0.1 per call: about 20 retries, never one per call
    assert 15 <= retries <= 22


# ---------------------------------------------------------------------- deadlines
def test_hung_sync_primary_is_abandoned_at_its_attempt_timeout() -> None:
    release = threading.Event()
    backup = Scripted("b", "ok")
    router = Router(
        "hang",
        [
            Backend(lambda: release.wait(10), model="hung", provider="t"),
            Backend(backup, model="ok", provider="t"),
        ],
        attempt_timeout_s=0.1,
        classify=classify,
    )
    try:
        started = time.monotonic()
        assert router.call() == "ok"
        assert time.monotonic() - started < 2.0  # the hung call waits 10 s
        assert router.status()[0].last_error == semconv.ERROR_TIMEOUT
    finally:
        release.set()


def test_call_deadline_bounds_an_uninterruptible_sync_backend() -> None:
    release = threading.Event()
    router = Router(
        "deadline",
        [Backend(lambda: release.wait(10), model="hung", provider="t")],
        timeout_s=0.15,
        attempt_timeout_s=5.0,
        classify=classify,
    )
    try:
        started = time.monotonic()
        with pytest.raises(AllBackendsFailedError) as info:
            router.call()
        assert time.monotonic() - started < 2.0  # the hung call waits 10 s
        assert info.value.attempts[0].error_kind == semconv.ERROR_TIMEOUT
        assert isinstance(info.value.__cause__, TimeoutError)
    finally:
        release.set()


def test_backend_timeout_overrides_the_router_attempt_timeout() -> None:
    release = threading.Event()
    router = Router(
        "override",
        [
            Backend(lambda: release.wait(10), model="hung", provider="t", timeout_s=0.05),
            Backend(lambda: "ok", model="b", provider="t"),
        ],
        attempt_timeout_s=20.0,
    )
    try:
        started = time.monotonic()
        assert router.call() == "ok"
        assert time.monotonic() - started < 2.0  # the hung call waits 10 s
    finally:
        release.set()


def test_inline_mode_runs_on_the_callers_thread(clock: ManualClock) -> None:
    threads = []
    router = make_router(
        clock, lambda: threads.append(threading.get_ident()) or "ok", isolate_sync=False
    )
    router.call()
    assert threads == [threading.get_ident()]


# ---------------------------------------------------------------------- ordering, status
def test_weighted_ordering_spreads_by_weight(clock: ManualClock) -> None:
    a, b = Scripted("a", default="a"), Scripted("b", default="b")
    router = Router(
        "w",
        [Backend(a, model="a", provider="t", weight=3.0), Backend(b, model="b", provider="t")],
        ordering=Weighted(random.Random(5)),
        clock=clock,
        isolate_sync=False,
    )
    results = [router.call() for _ in range(2000)]
    share = results.count("a") / len(results)
    assert 0.70 < share < 0.80


def test_least_latency_prefers_the_fastest_measured_backend(clock: ManualClock) -> None:
    router = Router(
        "ll",
        [
            Backend(lambda: "slow", model="slow", provider="t"),
            Backend(lambda: "fast", model="fast", provider="t"),
        ],
        ordering=LeastLatency(),
        clock=clock,
        isolate_sync=False,
    )
    router.breaker("slow").latency_ewma_s = 2.0
    router.breaker("fast").latency_ewma_s = 0.1
    assert router.call() == "fast"


def test_status_answers_from_memory(clock: ManualClock) -> None:
    router = make_router(
        clock, Scripted("p", default=lambda: ConnectionRefusedError("x")), Scripted("b")
    )
    for _ in range(3):
        router.call()
    primary, backup = router.status()
    assert isinstance(primary, BackendStatus)
    assert (primary.model, primary.state, primary.last_error) == ("m0", "open", "unavailable")
    assert primary.retry_after_s == pytest.approx(10.0)
    assert primary.last_error_at == pytest.approx(clock.time())
    assert (backup.state, backup.retry_after_s, backup.last_error) == ("closed", None, None)
    assert backup.error_rate == 0.0
    assert backup.latency_s is not None
    assert [b.model for b in router.backends] == ["m0", "m1"]


def test_background_probe_closes_the_primary_without_user_traffic() -> None:
    closed = threading.Event()
    router = Router(
        "probe",
        [
            Backend(lambda: "p", model="p", provider="t", probe=lambda: None),
            Backend(lambda: "b", model="b", provider="t"),
        ],
        breaker=BreakerPolicy(probe_interval_s=0.02),
    )
    breaker = router.breaker("p")
    breaker.add_listener(lambda _b, t: closed.set() if t.to_state == "closed" else None)
    breaker.force_open()
    assert closed.wait(3.0)
    assert router.status()[0].state == "closed"


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "build",
    [
        lambda: Router("r", []),
        lambda: Router("", [Backend(lambda: 1, model="a", provider="p")]),
        lambda: Router(
            "r",
            [
                Backend(lambda: 1, model="a", provider="p"),
                Backend(lambda: 2, model="a", provider="p"),
            ],
        ),
        lambda: Router("r", [Backend(lambda: 1, model="a", provider="p")], timeout_s=0),
        lambda: Backend(lambda: 1, model="", provider="p"),
        lambda: Backend(lambda: 1, model="a", provider="p", timeout_s=-1),
        lambda: Backend("not callable", model="a", provider="p"),  # type: ignore[arg-type]
        lambda: Backend(lambda: 1, model="a", provider="p", weight=0),
    ],
)
def test_bad_configuration_is_loud(build: Any) -> None:
    with pytest.raises(ConfigurationError):
        build()


def test_two_backends_of_one_model_need_names(clock: ManualClock) -> None:
    router = Router(
        "named",
        [
            Backend(
                Scripted("a", ConnectionRefusedError("x")), model="m", provider="p", name="east"
            ),
            Backend(Scripted("b", "west"), model="m", provider="p", name="west"),
        ],
        clock=clock,
    )
    assert router.call() == "west"
    assert [s.name for s in router.status()] == ["east", "west"]


def test_probe_args_make_a_minimal_call_as_the_probe() -> None:
    closed = threading.Event()
    calls: list[tuple[Any, ...]] = []

    def primary(*args: Any) -> str:
        calls.append(args)
        return "p"

    router = Router(
        "minimal",
        [Backend(primary, model="p", provider="t"), Backend(lambda: "b", model="b", provider="t")],
        breaker=BreakerPolicy(probe_interval_s=0.02),
        probe_args=("ping",),
    )
    breaker = router.breaker("p")
    breaker.add_listener(lambda _b, t: closed.set() if t.to_state == "closed" else None)
    breaker.force_open()
    assert closed.wait(3.0)
    assert calls[:2] == [("ping",), ("ping",)]


def test_a_hung_backend_cannot_starve_its_backup_of_threads() -> None:
    release = threading.Event()
    backup_calls = []

    def backup() -> str:
        backup_calls.append(1)
        return "ok"

    router = Router(
        "bulkhead",
        [
            Backend(lambda: release.wait(10), model="hung", provider="t"),
            Backend(backup, model="ok", provider="t"),
        ],
        attempt_timeout_s=0.05,
        max_workers=1,
        breaker=BreakerPolicy(consecutive_failures=100),
    )
    try:
        started = time.monotonic()
        for _ in range(4):  # the hung primary's one thread stays stuck after the first call
            assert router.call() == "ok"
        assert time.monotonic() - started < 3.0  # the hung calls wait 10 s
        assert len(backup_calls) == 4
        assert router._members[0].pool is not None
        assert router._members[0].pool.threads == 1  # bounded: no thread per hung call
    finally:
        release.set()


def test_classifier_that_raises_counts_as_other_and_never_breaks_the_call(
    clock: ManualClock, logs: Any
) -> None:
    from modelwatch._safety import reset_internal_error_log

    reset_internal_error_log()  # the internal-error log is rate-limited per site

    def broken(_: BaseException) -> str:
        raise RuntimeError("classifier bug")

    router = Router(
        "bad-classifier",
        [Backend(Scripted("p", ConnectionRefusedError("x")), model="p", provider="t")],
        classify=broken,
        clock=clock,
    )
    with pytest.raises(ConnectionRefusedError):  # _OTHER surfaces by default
        router.call()
    assert any(e["event"] == "modelwatch.internal_error" for e in logs)


def test_failover_duration_is_the_time_spent_before_the_backup(
    clock: ManualClock, telemetry: Any
) -> None:
    def slow_failure() -> str:
        clock.advance(2.0)
        raise ConnectionResetError("after 2 s")

    def slow_backup() -> str:
        clock.advance(5.0)  # the backup's own time is not failover cost
        return "ok"

    router = make_router(clock, slow_failure, slow_backup)
    assert router.call() == "ok"
    ((attrs, point),) = telemetry.points(semconv.FAILOVER_DURATION.name)
    assert point.sum == pytest.approx(2.0)
    assert (attrs[semconv.FROM], attrs[semconv.TO], attrs[semconv.REASON]) == (
        "m0",
        "m1",
        "unavailable",
    )


def test_retry_budget_refills_with_time(clock: ManualClock) -> None:
    from modelwatch.resilience._retry_tokens import RetryTokens

    budget = RetryTokens(RetryPolicy(budget_ratio=0.0, budget_min_per_s=1.0), clock)
    taken = sum(budget.withdraw() for _ in range(20))
    assert taken == 10  # the starting reserve
    assert not budget.withdraw()
    clock.advance(3.0)
    assert [budget.withdraw() for _ in range(4)] == [True, True, True, False]


def test_status_answers_while_a_call_hangs() -> None:
    release = threading.Event()
    router = Router(
        "busy", [Backend(lambda: release.wait(10), model="slow", provider="t")], timeout_s=None
    )
    caller = threading.Thread(target=router.call)
    caller.start()
    try:
        started = time.monotonic()
        (status,) = router.status()
        assert time.monotonic() - started < 0.5
        assert status.state == "closed"
    finally:
        release.set()
        caller.join(5)


def test_close_releases_the_routers_worker_threads() -> None:
    import modelwatch
    from support.servers import wait_until

    router = modelwatch.Router(
        "closable", [modelwatch.Backend(lambda x: x, model="closable-m", provider="p")]
    )
    assert router.call(7) == 7
    alive = lambda: [t for t in threading.enumerate() if "closable" in t.name]  # noqa: E731
    assert alive()
    router.close()
    wait_until(lambda: not alive(), timeout=5, message="router threads left")
    assert router.call(8) == 8  # still usable
    router.close()


def test_a_stale_rate_limit_reading_is_no_longer_reported() -> None:
    import modelwatch
    from modelwatch.resilience import router as router_module

    router = modelwatch.Router(
        "ratelimited", [modelwatch.Backend(lambda: "ok", model="rl-m", provider="p")]
    )
    (m,) = router._members
    m.rate_limits.update({"requests": 0.0})
    m.rate_limits_at = time.monotonic()
    assert router.status()[0].rate_limit_remaining == {"requests": 0.0}
    m.rate_limits_at -= router_module.RATE_LIMIT_READING_TTL_S + 1
    assert router.status()[0].rate_limit_remaining == {}
    observed = [
        attrs
        for _, attrs in router_module._observe_rate_limits()
        if attrs.get("modelwatch.router") == "ratelimited"
    ]
    assert observed == []
    router.close()
