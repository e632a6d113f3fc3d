"""``Health.add_router``: each backend is a model check fed by its breaker (and its probe).

These tests use a minimal stand-in with the router's duck-typed surface (``name``,
``backends`` with ``model``/``probe``, ``status()`` returning ``BackendStatus``-like
objects); the real-router test lives in ``test_health_router_real.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from modelwatch.health import Health


@dataclass
class FakeStatus:
    model: str
    state: str = "closed"
    retry_after_s: float | None = None
    last_error: str | None = None


@dataclass
class FakeBackend:
    model: str
    probe: Callable[[], Any] | None = None


@dataclass
class FakeRouter:
    name: str
    backends: list[FakeBackend]
    states: dict[str, FakeStatus] = field(default_factory=dict)
    broken: bool = False

    def __post_init__(self) -> None:
        self.states = {b.model: FakeStatus(b.model) for b in self.backends}

    def status(self) -> list[FakeStatus]:
        if self.broken:
            raise RuntimeError("router state unavailable")
        return list(self.states.values())


PRIMARY = "facebook/bart-large-cnn"
BACKUP = "google/flan-t5-large"


@pytest.fixture
def router() -> FakeRouter:
    return FakeRouter("summarize", [FakeBackend(PRIMARY), FakeBackend(BACKUP)])


def test_each_backend_becomes_a_model_check_named_after_its_model(
    make_health: Callable[..., Health], router: FakeRouter
) -> None:
    health = make_health()

    names = health.add_router(router, critical=True, weight=2.0)

    assert names == [PRIMARY, BACKUP]
    report = health.report()
    for check in report.checks:
        assert (check.kind, check.status, check.circuit) == ("model", "ok", "closed")
        assert (check.critical, check.weight) == (True, 2.0)
    assert report.status == "ok"


def test_an_open_breaker_is_down_in_the_very_next_report(
    make_health: Callable[..., Health], router: FakeRouter
) -> None:
    health = make_health()
    health.add_router(router)
    assert health.report().check(PRIMARY).status == "ok"  # type: ignore[union-attr]

    router.states[PRIMARY] = FakeStatus(PRIMARY, "open", 9.5, "timeout")
    with capture_logs() as logs:
        report = health.report()  # no probe ran in between

    primary = report.check(PRIMARY)
    assert primary is not None
    assert (primary.status, primary.circuit) == ("down", "open")
    assert primary.error == "circuit open; last error: timeout; retry in 9.5 s"
    assert report.check(BACKUP).status == "ok"  # type: ignore[union-attr]
    assert report.status == "degraded"  # not critical: the backup still serves
    assert [(e["check"], e["previous"], e["status"]) for e in logs] == [(PRIMARY, "ok", "down")]

    router.states[PRIMARY] = FakeStatus(PRIMARY, "half_open")
    half = health.report().check(PRIMARY)
    assert half is not None
    assert (half.status, half.circuit, half.error) == ("degraded", "half_open", "circuit half-open")

    router.states[PRIMARY] = FakeStatus(PRIMARY)
    healed = health.report().check(PRIMARY)
    assert healed is not None
    assert (healed.status, healed.error) == ("ok", None)


def test_the_backend_probe_and_the_breaker_combine_the_worse_wins(
    make_health: Callable[..., Health],
) -> None:
    answers = {PRIMARY: True, BACKUP: False}
    router = FakeRouter(
        "summarize",
        [
            FakeBackend(PRIMARY, probe=lambda: answers[PRIMARY]),
            FakeBackend(BACKUP, probe=lambda: answers[BACKUP]),
        ],
    )
    health = make_health(flap_threshold=1)
    health.add_router(router)

    report = health.run_once()
    assert report.check(PRIMARY).status == "ok"  # type: ignore[union-attr]
    backup = report.check(BACKUP)
    assert backup is not None
    # the breaker is closed, but the probe says down
    assert (backup.status, backup.circuit, backup.error) == (
        "down",
        "closed",
        "probe returned False",
    )

    router.states[PRIMARY] = FakeStatus(PRIMARY, "half_open")
    assert health.report().check(PRIMARY).status == "degraded"  # type: ignore[union-attr]
    answers[PRIMARY] = False
    health.run_once()
    assert health.report().check(PRIMARY).status == "down"  # type: ignore[union-attr]


def test_a_broken_router_status_never_breaks_the_report(
    make_health: Callable[..., Health], router: FakeRouter
) -> None:
    health = make_health()
    health.add_router(router)
    router.broken = True

    report = health.report()

    assert all(c.circuit is None for c in report.checks)
    assert report.check(PRIMARY).status == "unknown"  # type: ignore[union-attr]


def test_a_model_in_two_routers_is_refused_whole(
    make_health: Callable[..., Health], router: FakeRouter
) -> None:
    health = make_health()
    health.add("other", probe=lambda: True)
    health.add_router(router)
    second = FakeRouter("review", [FakeBackend("new/model"), FakeBackend(BACKUP)])

    with pytest.raises(ValueError, match="already exists"):
        health.add_router(second)

    assert "new/model" not in health  # nothing half-registered


def test_the_endpoint_shows_the_circuit(
    make_health: Callable[..., Health], router: FakeRouter, serve_wsgi: Any
) -> None:
    health = make_health()
    health.add_router(router)
    router.states[PRIMARY] = FakeStatus(PRIMARY, "open", None, "unavailable")

    with serve_wsgi(health.wsgi()) as base, httpx.Client(base_url=base) as client:
        answer = client.get(f"/checks/{PRIMARY}")

    assert answer.status_code == 503
    assert answer.json()["circuit"] == "open"
    assert answer.json()["error"] == "circuit open; last error: unavailable"


def test_breaker_changes_are_logged_by_background_probing_without_requests(
    make_health: Callable[..., Health], router: FakeRouter
) -> None:
    health = make_health()
    health.add_router(router)
    with capture_logs() as logs, health:
        wait_for(lambda: any(e.get("check") == PRIMARY for e in logs))  # unknown -> ok
        router.states[PRIMARY] = FakeStatus(PRIMARY, "open", 5.0, "timeout")
        wait_for(lambda: any(e.get("status") == "down" for e in logs))
    assert [(e["previous"], e["status"]) for e in logs if e["check"] == PRIMARY] == [
        ("unknown", "ok"),
        ("ok", "down"),
    ]


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait for the scheduler thread (real time: this is the background path)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.005)


def test_a_backend_being_warmed_up_is_degraded_not_down() -> None:
    from modelwatch.health import Health
    from modelwatch.resilience.backend import BackendStatus

    class Router:
        warming = True

        def status(self) -> list[BackendStatus]:
            return [
                BackendStatus(
                    "flan",
                    "flan",
                    "hf",
                    "open",
                    5.0,
                    "timeout",
                    None,
                    1.0,
                    None,
                    warming=self.warming,
                )
            ]

    router = Router()
    health = Health(jitter=0.0)
    health.add_router(router)
    check = health.report().check("flan")
    assert check is not None
    assert (check.status, check.error) == (
        "degraded",
        "warming up; circuit open; last error: timeout; retry in 5.0 s",
    )
    router.warming = False
    check = health.report().check("flan")
    assert check is not None
    assert check.status == "down"
