"""``Health.add_router`` with the real :class:`modelwatch.Router`: a primary whose breaker
opens is down in the very next report, and a synthetic analysis runs through the router."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

import modelwatch
from modelwatch.health import Health, synthetic

PRIMARY = "facebook/bart-large-cnn"
BACKUP = "google/flan-t5-large"


def _router(primary_up: list[bool], **backend: Any) -> modelwatch.Router:
    def call_primary(text: str) -> str:
        if not primary_up[0]:
            raise ConnectionError("connection refused by upstream")
        return text.lower()

    def call_backup(text: str) -> str:
        return text.upper()

    return modelwatch.Router(
        "summarize",
        [
            modelwatch.Backend(call_primary, model=PRIMARY, provider="huggingface", **backend),
            modelwatch.Backend(call_backup, model=BACKUP, provider="huggingface"),
        ],
        breaker=modelwatch.BreakerPolicy(consecutive_failures=2, open_s=60.0),
        timeout_s=5.0,
        attempt_timeout_s=2.0,
    )


def test_primary_breaker_opening_is_down_within_one_report(
    make_health: Callable[..., Health], serve_wsgi: Any
) -> None:
    primary_up = [True]
    router = _router(primary_up)
    health = make_health()
    assert health.add_router(router) == [PRIMARY, BACKUP]
    health.add(
        "code_review",
        probe=synthetic(
            router.call, "Def F(): Pass", expect=lambda r: r.lower() == "def f(): pass"
        ),
        kind="analysis",
    )
    before = health.run_once()
    assert [(c.name, c.status, c.circuit) for c in before.checks] == [
        (PRIMARY, "ok", "closed"),
        (BACKUP, "ok", "closed"),
        ("code_review", "ok", None),
    ]

    primary_up[0] = False
    assert router.call("Text") == "TEXT"  # failed over to the backup
    assert router.call("Text") == "TEXT"  # second failure opens the primary's breaker

    report = health.report()  # no probe in between: the breaker is read live
    primary = report.check(PRIMARY)
    assert primary is not None
    assert (primary.status, primary.circuit) == ("down", "open")
    assert primary.error is not None
    assert primary.error.startswith("circuit open; last error: unavailable; retry in ")
    assert report.check(BACKUP).status == "ok"  # type: ignore[union-attr]
    assert report.status == "degraded"

    # the analysis still works end to end (through the backup), with its latency
    analysis = health.run_once(["code_review"]).check("code_review")
    assert analysis is not None
    assert (analysis.status, analysis.error) == ("ok", None)
    assert analysis.latency_s is not None
    assert analysis.latency_s > 0

    with serve_wsgi(health.wsgi()) as base, httpx.Client(base_url=base) as client:
        answer = client.get(f"/checks/{PRIMARY}")
        models = client.get("/models")
    assert (answer.status_code, answer.json()["circuit"]) == (503, "open")
    assert models.status_code == 200  # the primary is not critical: the router still serves
    assert models.json()["status"] == "degraded"


def test_backend_probe_feeds_the_check_and_critical_backends_take_the_service_down(
    make_health: Callable[..., Health],
) -> None:
    primary_up = [True]
    probe_answer = [True]
    router = _router(primary_up, probe=lambda: probe_answer[0])
    health = make_health(flap_threshold=1)
    health.add_router(router, critical=True)

    assert health.run_once().status == "ok"
    probe_answer[0] = False  # the breaker is still closed, but the backend's probe fails
    report = health.run_once()
    primary = report.check(PRIMARY)
    assert primary is not None
    assert (primary.status, primary.circuit, primary.error) == (
        "down",
        "closed",
        "probe returned False",
    )
    assert report.status == "down"


def test_two_backends_with_one_model_are_named_after_the_backends(
    make_health: Callable[..., Health],
) -> None:
    router = modelwatch.Router(
        "chat",
        [
            modelwatch.Backend(str, model=BACKUP, provider="huggingface", name="flan-eu"),
            modelwatch.Backend(str, model=BACKUP, provider="huggingface", name="flan-us"),
            modelwatch.Backend(str, model=PRIMARY, provider="huggingface"),
        ],
    )
    health = make_health()

    assert health.add_router(router) == ["flan-eu", "flan-us", PRIMARY]
    router.breaker("flan-us").force_open()
    report = health.report()
    assert [(c.name, c.status) for c in report.checks] == [
        ("flan-eu", "ok"),
        ("flan-us", "down"),
        (PRIMARY, "ok"),
    ]
