"""The breaker guard's rules, one at a time, with a manual clock (nothing sleeps)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from modelwatch import semconv
from modelwatch._clock import ManualClock
from modelwatch.errors import ConfigurationError
from modelwatch.resilience._probe import run_probe
from modelwatch.resilience.breaker import Breaker, Permit, Transition
from modelwatch.resilience.policy import BreakerPolicy, RetryPolicy

FAST = 0.01
NO_JITTER = BreakerPolicy(jitter=0.0)


def make(clock: ManualClock, policy: BreakerPolicy = NO_JITTER, **kw: Any) -> Breaker:
    return Breaker("b", policy, clock=clock, rng=random.Random(7), **kw)


def fail(b: Breaker, n: int = 1, kind: str = semconv.ERROR_UNAVAILABLE) -> None:
    for _ in range(n):
        permit = b.admit()
        assert permit is not None
        b.record_failure(permit, kind, FAST)


def succeed(b: Breaker, n: int = 1, duration: float = FAST) -> None:
    for _ in range(n):
        permit = b.admit()
        assert permit is not None
        b.record_success(permit, duration)


def test_opens_after_three_consecutive_failures_and_rejects(clock: ManualClock) -> None:
    b = make(clock)
    fail(b, 2)
    assert b.state == "closed"
    fail(b)
    assert b.state == "open"
    assert b.admit() is None
    assert b.retry_after_s == pytest.approx(10.0)


def test_a_success_resets_the_consecutive_count(clock: ManualClock) -> None:
    b = make(clock)
    fail(b, 2)
    succeed(b)
    fail(b, 2)
    assert b.state == "closed"


def test_failure_ratio_opens_over_ten_calls_in_window(clock: ManualClock) -> None:
    b = make(clock)
    reasons: list[str] = []
    b.add_listener(lambda _b, t: reasons.append(t.reason))
    for _ in range(4):
        succeed(b)
        fail(b)
        clock.advance(1.0)
    succeed(b)
    assert b.state == "closed"  # 4 failures in 9 calls: below min_calls
    fail(b)  # 5 of 10
    assert b.state == "open"
    assert reasons == ["failure_ratio"]


def test_failures_older_than_the_window_do_not_count(clock: ManualClock) -> None:
    b = make(clock)
    for _ in range(4):
        succeed(b)
        fail(b)
    clock.advance(40.0)  # the window is 30 s
    succeed(b)
    fail(b)
    assert b.state == "closed"
    assert b.error_rate == pytest.approx(0.5)


def test_slow_calls_open_at_eighty_percent(clock: ManualClock) -> None:
    b = make(clock)
    succeed(b, 2, duration=FAST)
    succeed(b, 7, duration=31.0)
    assert b.state == "closed"
    succeed(b, 1, duration=31.0)  # 8 of 10 slower than 30 s
    assert b.state == "open"


def test_seven_slow_calls_of_ten_do_not_open(clock: ManualClock) -> None:
    b = make(clock)
    succeed(b, 3, duration=FAST)
    succeed(b, 7, duration=31.0)
    assert b.state == "closed"


def test_open_time_elapses_into_one_trial_then_closes_after_two_successes(
    clock: ManualClock,
) -> None:
    b = make(clock)
    fail(b, 3)
    clock.advance(9.99)
    assert b.admit() is None
    clock.advance(0.02)
    assert b.state == "half_open"
    trial = b.admit()
    assert trial is not None
    assert trial.trial
    assert b.admit() is None  # one trial at a time
    b.record_success(trial, FAST)
    assert b.state == "half_open"
    second = b.admit()
    assert second is not None
    b.record_success(second, FAST)
    assert b.state == "closed"


def test_open_time_doubles_per_failed_trial_up_to_sixty_and_resets_on_close(
    clock: ManualClock,
) -> None:
    b = make(clock)
    fail(b, 3)
    seen = []
    for _ in range(5):
        seen.append(b.retry_after_s)
        clock.advance(b.retry_after_s or 0.0)
        fail(b)  # the trial fails
    assert seen == [10.0, 20.0, 40.0, 60.0, 60.0]
    clock.advance(60.0)
    succeed(b, 2)
    assert b.state == "closed"
    fail(b, 3)
    assert b.retry_after_s == 10.0


def test_jitter_stays_within_its_bounds(clock: ManualClock) -> None:
    opens = []
    for seed in range(50):
        b = Breaker("j", BreakerPolicy(), clock=clock, rng=random.Random(seed))
        fail(b, 3)
        opens.append(b.retry_after_s)
    assert all(9.0 <= o <= 11.0 for o in opens if o is not None)
    assert len(set(opens)) > 40  # really randomised


def test_jitter_never_takes_the_open_time_past_its_cap(clock: ManualClock) -> None:
    for seed in range(50):
        policy = BreakerPolicy(open_s=60.0, max_open_s=60.0, jitter=0.1)
        b = Breaker("cap", policy, clock=clock, rng=random.Random(seed))
        fail(b, 3)
        assert b.retry_after_s is not None
        assert 54.0 <= b.retry_after_s <= 60.0


def test_half_open_trials_are_bounded_by_policy(clock: ManualClock) -> None:
    b = make(clock, BreakerPolicy(jitter=0.0, half_open_trials=3))
    fail(b, 3)
    clock.advance(10.0)
    permits = [b.admit() for _ in range(5)]
    assert [p is not None for p in permits] == [True, True, True, False, False]
    assert b.trials_in_flight == 3


def test_an_expired_lease_frees_the_slot_and_its_late_result_is_ignored(
    clock: ManualClock,
) -> None:
    b = make(clock)
    fail(b, 3)
    clock.advance(10.0)
    stuck = b.admit()
    assert stuck is not None
    clock.advance(29.0)
    assert b.admit() is None
    clock.advance(1.0)  # lease (30 s) over
    fresh = b.admit()
    assert fresh is not None
    b.record_success(stuck, FAST)  # the stuck trial finally returns: must not count
    b.record_success(fresh, FAST)
    assert b.state == "half_open"  # one counted success, not two


def test_late_success_from_an_older_generation_never_closes(clock: ManualClock) -> None:
    b = make(clock)
    slow = b.admit()
    assert slow is not None
    fail(b, 3)
    clock.advance(10.0)
    trial = b.admit()
    assert trial is not None
    b.record_success(trial, FAST)
    generation = b.generation
    b.record_success(slow, FAST)  # admitted before the breaker opened
    assert b.generation == generation
    assert b.state == "half_open"


def test_late_failure_from_an_older_generation_never_reopens(clock: ManualClock) -> None:
    b = make(clock)
    old = [b.admit() for _ in range(3)]
    fail(b, 3)
    clock.advance(10.0)
    succeed(b, 2)
    assert b.state == "closed"
    for p in old:
        assert p is not None
        b.record_failure(p, semconv.ERROR_TIMEOUT, FAST)
    assert b.state == "closed"


@pytest.mark.parametrize(
    "kind", [semconv.ERROR_CANCELLED, semconv.ERROR_BAD_REQUEST, semconv.ERROR_RATE_LIMITED]
)
def test_ignored_kinds_never_count_and_release_the_trial(clock: ManualClock, kind: str) -> None:
    b = make(clock)
    fail(b, 10, kind=kind)
    assert b.state == "closed"
    fail(b, 3)
    clock.advance(10.0)
    trial = b.admit()
    assert trial is not None
    b.record_failure(trial, kind, FAST)
    assert b.state == "half_open"
    assert b.trials_in_flight == 0
    assert b.admit() is not None  # the slot is free again


def test_other_errors_count_by_default(clock: ManualClock) -> None:
    b = make(clock)
    fail(b, 3, kind=semconv.ERROR_OTHER)
    assert b.state == "open"


def test_a_permit_settles_once(clock: ManualClock) -> None:
    b = make(clock)
    p = b.admit()
    assert p is not None
    b.record_failure(p, semconv.ERROR_TIMEOUT, FAST)
    b.record_failure(p, semconv.ERROR_TIMEOUT, FAST)
    b.record_failure(p, semconv.ERROR_TIMEOUT, FAST)
    assert b.state == "closed"


def test_broken_listener_never_raises_and_others_still_run(
    clock: ManualClock, logs: list[dict[str, Any]]
) -> None:
    from modelwatch._safety import reset_internal_error_log

    reset_internal_error_log()  # the internal-error log is rate-limited per site
    b = make(clock)
    seen: list[Transition] = []

    def broken(_b: Breaker, _t: Transition) -> None:
        raise RuntimeError("listener bug")

    b.add_listener(broken)
    b.add_listener(lambda _b, t: seen.append(t))
    fail(b, 3)
    assert [(t.from_state, t.to_state, t.reason) for t in seen] == [
        ("closed", "open", "consecutive_failures")
    ]
    assert any(e["event"] == "modelwatch.internal_error" for e in logs)


def test_transitions_emit_counter_span_event_and_structlog(
    clock: ManualClock, telemetry: Any, logs: list[dict[str, Any]]
) -> None:
    b = make(clock, router="summarize", model="facebook/bart-large-cnn")
    from modelwatch.capture._telemetry import telemetry as current

    with current().tracer.start_as_current_span("route summarize"):
        fail(b, 3)
        clock.advance(10.0)
        succeed(b, 2)
    assert (
        telemetry.counter(
            semconv.CIRCUIT_TRANSITIONS.name,
            **{semconv.FROM: "closed", semconv.TO: "open", semconv.REASON: "consecutive_failures"},
        )
        == 1
    )
    assert telemetry.counter(semconv.CIRCUIT_TRANSITIONS.name, **{semconv.TO: "closed"}) == 1
    attrs, _ = telemetry.points(semconv.CIRCUIT_TRANSITIONS.name)[0]
    assert attrs[semconv.MODELWATCH_ROUTER] == "summarize"
    assert attrs[semconv.GEN_AI_REQUEST_MODEL] == "facebook/bart-large-cnn"
    (span,) = telemetry.spans("route summarize")
    events = [(e.name, e.attributes[semconv.TO]) for e in span.events]
    assert events == [
        (semconv.EVENT_STATE_CHANGE, "open"),
        (semconv.EVENT_STATE_CHANGE, "half_open"),
        (semconv.EVENT_STATE_CHANGE, "closed"),
    ]
    levels = [
        (e["event"], e["log_level"]) for e in logs if e["event"].startswith("modelwatch.circuit")
    ]
    assert levels == [
        ("modelwatch.circuit.opened", "error"),
        ("modelwatch.circuit.half_open", "warning"),
        ("modelwatch.circuit.closed", "info"),
    ]


def test_state_gauge_reports_each_breaker(clock: ManualClock, telemetry: Any) -> None:
    a = Breaker("gauge-a", NO_JITTER, clock=clock)
    b = Breaker("gauge-b", NO_JITTER, clock=clock)
    fail(b, 3)
    values = {
        attrs[semconv.MODELWATCH_CIRCUIT]: p.value
        for attrs, p in telemetry.points(semconv.CIRCUIT_STATE.name)
    }
    assert values["gauge-a"] == semconv.CIRCUIT_CLOSED
    assert values["gauge-b"] == semconv.CIRCUIT_OPEN
    clock.advance(10.0)  # open time over, but nothing says the backend is back: still 2
    values = {
        attrs[semconv.MODELWATCH_CIRCUIT]: p.value
        for attrs, p in telemetry.points(semconv.CIRCUIT_STATE.name)
    }
    assert b.state == "half_open"
    assert values["gauge-b"] == semconv.CIRCUIT_OPEN
    succeed(b, 1)  # one good trial of close_after=2: recovering
    values = {
        attrs[semconv.MODELWATCH_CIRCUIT]: p.value
        for attrs, p in telemetry.points(semconv.CIRCUIT_STATE.name)
    }
    assert values["gauge-b"] == semconv.CIRCUIT_HALF_OPEN
    del a


def test_pybreaker_storage_mirrors_the_state(clock: ManualClock) -> None:
    b = make(clock)
    assert b.pybreaker.current_state == "closed"
    fail(b, 3)
    assert b.pybreaker.current_state == "open"
    clock.advance(10.0)
    succeed(b, 2)
    assert b.pybreaker.current_state == "closed"


def test_force_open_and_reset(clock: ManualClock) -> None:
    b = make(clock)
    b.force_open()
    assert b.state == "open"
    assert b.admit() is None
    b.reset()
    assert b.state == "closed"
    assert isinstance(b.admit(), Permit)


# ---------------------------------------------------------------------- probes
def test_probe_runs_as_trial_before_open_time_and_closes_after_two(clock: ManualClock) -> None:
    b = make(clock)
    calls = []
    b.set_probe(lambda: calls.append(1))
    fail(b, 3)
    assert run_probe(b) is True
    assert b.state == "half_open"
    assert run_probe(b) is True
    assert b.state == "closed"
    assert len(calls) == 2
    assert run_probe(b) is None  # nothing to do while closed


def test_failed_probe_reopens_with_backoff(clock: ManualClock) -> None:
    b = make(clock)

    def down() -> None:
        raise ConnectionRefusedError("down")

    b.set_probe(down)
    fail(b, 3)
    assert run_probe(b) is False
    assert b.state == "open"
    assert b.retry_after_s == 20.0
    assert b.last_error_kind == semconv.ERROR_UNAVAILABLE


def test_probe_that_hangs_is_abandoned_at_its_timeout(clock: ManualClock) -> None:
    import threading

    release = threading.Event()
    b = make(clock, BreakerPolicy(jitter=0.0, probe_timeout_s=0.05))
    b.set_probe(lambda: release.wait(5))
    fail(b, 3)
    try:
        assert run_probe(b) is False
        assert b.last_error_kind == semconv.ERROR_TIMEOUT
    finally:
        release.set()


def test_background_prober_closes_a_healed_breaker_without_traffic() -> None:
    import threading

    closed = threading.Event()
    b = Breaker("bg", BreakerPolicy(jitter=0.0, probe_interval_s=0.02))
    b.add_listener(lambda _b, t: closed.set() if t.to_state == "closed" else None)
    healthy = threading.Event()

    def probe() -> None:
        if not healthy.is_set():
            raise ConnectionResetError("still down")

    b.set_probe(probe)
    fail(b, 3)
    healthy.set()
    assert closed.wait(3.0)
    assert b.state == "closed"


# ---------------------------------------------------------------------- policies
@pytest.mark.parametrize(
    "kwargs",
    [
        {"consecutive_failures": 0},
        {"failure_ratio": 1.5},
        {"open_s": 0},
        {"max_open_s": 5.0},
        {"jitter": 1.0},
        {"backoff_factor": 0.5},
        {"ignore": frozenset({"nope"})},
        {"half_open_trials": 0},
    ],
)
def test_invalid_breaker_policy_is_loud(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        BreakerPolicy(**kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"max_retries": -1}, {"backoff_s": -1.0}, {"retry_kinds": frozenset({"x"})}]
)
def test_invalid_retry_policy_is_loud(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)


def test_defaults_match_the_design() -> None:
    p = BreakerPolicy()
    assert (p.consecutive_failures, p.failure_ratio, p.min_calls, p.window_s) == (3, 0.5, 10, 30.0)
    assert (p.slow_call_s, p.slow_call_ratio) == (30.0, 0.8)
    assert (p.open_s, p.max_open_s, p.half_open_trials, p.close_after) == (10.0, 60.0, 1, 2)
    assert p.probe_interval_s == 5.0
    assert {semconv.ERROR_CANCELLED, semconv.ERROR_BAD_REQUEST} <= p.ignore
    r = RetryPolicy()
    assert r.max_wait_s == 60.0
    assert r.failover_on_other is False
