"""The resilience event stream: frozen events, listeners (OTel, structlog, yours), the log
summary of a flapping breaker, and the exported state of a hanging backend."""

from __future__ import annotations

import re
import threading
from typing import Any

import httpx
import pytest
import structlog

from modelwatch import semconv
from modelwatch._clock import ManualClock
from modelwatch.resilience import hooks
from modelwatch.resilience._listeners import SUMMARY_EVENT, LogListener, otel_listener
from modelwatch.resilience._probe import run_probe
from modelwatch.resilience.breaker import Breaker
from modelwatch.resilience.circuit import circuit
from modelwatch.resilience.policy import BreakerPolicy
from modelwatch.testing import FakeModelServer

POLICY = BreakerPolicy(jitter=0.0, open_s=2.0, probe_timeout_s=0.3)
STEADY = BreakerPolicy(jitter=0.0, open_s=2.0, backoff_factor=1.0)  # no backoff: one cycle 2.5 s


def fail(b: Breaker, n: int) -> None:
    for _ in range(n):
        permit = b.admit()
        assert permit is not None
        b.record_failure(permit, semconv.ERROR_TIMEOUT, 0.01)


def test_listeners_receive_transitions_rejections_and_probe_results(clock: ManualClock) -> None:
    seen: list[hooks.Event] = []
    hooks.add_listener(seen.append)
    b = Breaker("events", POLICY, clock=clock, router="chat", model="m")
    fail(b, 3)
    b.set_probe(lambda: None)  # the prober thread is not needed: run one probe here
    assert run_probe(b) is True
    transitions = [e for e in seen if isinstance(e, hooks.BreakerTransition)]
    assert [(t.from_state, t.to_state, t.reason) for t in transitions[:2]] == [
        ("closed", "open", "consecutive_failures"),
        ("open", "half_open", "probe"),
    ]
    opened = transitions[0]
    assert (opened.router, opened.model, opened.last_error) == ("chat", "m", "timeout")
    assert opened.at == clock.time()  # stamped when it happened
    assert opened.retry_after_s == pytest.approx(2.0)
    probes = [e for e in seen if isinstance(e, hooks.ProbeResult)]
    assert [(p.breaker, p.ok, p.kind) for p in probes] == [("events", True, None)]
    with pytest.raises(dataclasses_frozen()):
        opened.reason = "x"  # type: ignore[misc]


def dataclasses_frozen() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_a_refused_circuit_call_is_an_event(clock: ManualClock) -> None:
    seen: list[hooks.Event] = []
    hooks.add_listener(seen.append)
    guarded = circuit("refusing", POLICY, clock=clock)
    guarded.breaker.force_open()
    with pytest.raises(Exception, match="open"), guarded:
        pass
    (rejected,) = [e for e in seen if isinstance(e, hooks.CallRejected)]
    assert (rejected.breaker, rejected.reason) == ("refusing", semconv.REASON_CIRCUIT_OPEN)
    assert rejected.retry_after_s == pytest.approx(2.0)


def test_the_outputs_are_listeners_and_a_broken_one_changes_nothing(
    clock: ManualClock, telemetry: Any, logs: list[dict[str, Any]]
) -> None:
    built: list[int] = []

    def broken(_event: hooks.Event) -> None:
        raise RuntimeError("listener bug")

    def factory() -> hooks.Listener:
        built.append(1)
        return lambda _event: None

    hooks.set_listeners([broken, hooks.ListenerFactory(factory)])  # no OTel, no structlog
    b = Breaker("quiet", POLICY, clock=clock)
    fail(b, 3)
    b.reset()
    assert b.state == "closed"
    assert built == [1]  # built once, on the first event
    assert telemetry.counter(semconv.CIRCUIT_TRANSITIONS.name) == 0
    assert not [e for e in logs if e["event"].startswith("modelwatch.circuit")]
    hooks.set_listeners([otel_listener])
    fail(b, 3)
    assert telemetry.counter(semconv.CIRCUIT_TRANSITIONS.name, **{semconv.TO: "open"}) == 1


def test_router_events_go_through_the_same_stream(telemetry: Any) -> None:
    seen: list[hooks.Event] = []
    hooks.add_listener(seen.append)
    hooks.emit(hooks.Failover("chat", "a", "b", semconv.ERROR_TIMEOUT))
    hooks.emit(hooks.Retry("chat", "a", 2, 0.5, semconv.ERROR_RATE_LIMITED))
    hooks.emit(hooks.Hedge("chat", "a", "b", 0.8))
    assert [type(e).__name__ for e in seen] == ["Failover", "Retry", "Hedge"]
    assert telemetry.counter(semconv.FAILOVERS.name, **{semconv.TO: "b"}) == 1


# ---------------------------------------------------------------------- log noise
def test_a_long_outage_logs_a_summary_not_a_line_per_probe(
    clock: ManualClock, logs: list[dict[str, Any]]
) -> None:
    """2.5 minutes of a probe failing every 2.5 s: 60 open/half-open pairs (the issue saw 59
    ERROR and 59 WARNING lines)."""
    hooks.set_listeners([LogListener(interval_s=60.0, clock=clock)])
    b = Breaker("outage", STEADY, clock=clock, router="chat", model="m")
    fail(b, 3)
    for _ in range(59):
        clock.advance(2.5)
        permit = b.admit()  # the half-open trial
        assert permit is not None
        b.record_failure(permit, semconv.ERROR_TIMEOUT, 0.3)
    clock.advance(2.5)
    for _ in range(2):
        permit = b.admit()
        assert permit is not None
        b.record_success(permit, 0.01)
    assert b.state == "closed"
    events = [e["event"] for e in logs if e["event"].startswith("modelwatch.circuit")]
    assert events[:2] == ["modelwatch.circuit.opened", "modelwatch.circuit.half_open"]
    assert events[-1] == "modelwatch.circuit.closed"
    assert len(events) <= 7, events
    summaries = [e for e in logs if e["event"] == SUMMARY_EVENT]
    assert summaries
    # nothing is dropped: logged lines plus summarised counts are every transition
    logged_open = events.count("modelwatch.circuit.opened")
    logged_half = events.count("modelwatch.circuit.half_open")
    assert logged_open + sum(s["opened"] for s in summaries) == 60
    assert logged_half + sum(s["half_open"] for s in summaries) == 60
    assert summaries[0]["circuit"] == "outage"
    assert summaries[0]["last_error"] == "timeout"


def test_event_lines_do_not_double_words(clock: ManualClock, logs: list[dict[str, Any]]) -> None:
    hooks.set_listeners([LogListener(interval_s=1.0, clock=clock)])
    b = Breaker("circuit", STEADY, clock=clock, router="health", model="health")
    fail(b, 3)
    for _ in range(3):
        clock.advance(2.5)
        permit = b.admit()
        assert permit is not None
        b.record_failure(permit, semconv.ERROR_TIMEOUT, 0.3)
    renderer = structlog.dev.ConsoleRenderer(colors=False)
    for entry in logs:
        line = renderer(None, entry.get("log_level", "info"), dict(entry))
        assert not re.search(r"\b(\w+)\s+\1\b", line), line


# ---------------------------------------------------------------------- a hanging backend
MODEL = "acme/hangs"


def state_gauge(telemetry: Any, name: str) -> float:
    (value,) = [
        p.value
        for attrs, p in telemetry.points(semconv.CIRCUIT_STATE.name)
        if attrs[semconv.MODELWATCH_CIRCUIT] == name
    ]
    return float(value)


def test_a_hanging_backend_exports_open_throughout_the_hang(
    fake_server: FakeModelServer, clock: ManualClock, telemetry: Any
) -> None:
    """Probes of a hanging model never answer: the breaker cycles open (open_s) and
    half-open (while each probe hangs), and every sample of the gauge must read 2 so the
    CircuitOpen alert fires (the issue's scrapes saw 0, 0, 1, 1)."""
    fake_server.fail(MODEL, "hang")
    client = httpx.Client(timeout=2.0)
    b = Breaker("hangs", POLICY, clock=clock)
    b.set_probe(
        lambda: client.post(
            fake_server.model_url(MODEL), json={"inputs": "ping"}
        ).raise_for_status()
    )
    fail(b, 3)
    samples = [state_gauge(telemetry, "hangs")]
    try:
        for cycle in range(3):
            clock.advance(2.5)  # the open time is over: nothing says the backend is back
            samples.append(state_gauge(telemetry, "hangs"))
            probing = threading.Thread(target=run_probe, args=(b,))
            probing.start()
            while fake_server.request_count(MODEL) < cycle + 1:  # the probe is hanging now
                probing.join(0.01)
            assert b.state == "half_open"
            samples.append(state_gauge(telemetry, "hangs"))
            probing.join()
            assert b.state == "open"  # the probe timed out
            samples.append(state_gauge(telemetry, "hangs"))
    finally:
        fake_server.heal(MODEL)
        client.close()
    assert samples == [2.0] * len(samples)
