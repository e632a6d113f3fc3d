"""Dependencies and cascades (docs/health.md): causes in the JSON, the gauge and the events;
cycles refused at ``add``; ``GET /graph``. Probe results are scripted; no time passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from modelwatch import semconv
from modelwatch.errors import ConfigurationError
from modelwatch.health import Health
from modelwatch.testing import capture

MakeHealth = Callable[..., Health]


class Switch:
    """A probe whose answer the test sets."""

    def __init__(self, up: bool = True) -> None:
        self.up = up

    def __call__(self) -> bool:
        return self.up


def _stack(make_health: MakeHealth) -> tuple[Health, dict[str, Switch]]:
    """redis <- cache-api <- code_review, and flan on its own."""
    health = make_health(flap_threshold=1)
    probes = {name: Switch() for name in ("redis", "cache-api", "code_review", "flan")}
    health.add("redis", probe=probes["redis"], kind="dependency", critical=True)
    health.add("cache-api", probe=probes["cache-api"], kind="dependency", depends_on=("redis",))
    health.add("code_review", probe=probes["code_review"], kind="analysis", depends_on="cache-api")
    health.add("flan", probe=probes["flan"])
    return health, probes


def _causes(health: Health) -> dict[str, Any]:
    return {c.name: (c.status, c.cause) for c in health.run_once().checks}


def test_dependents_report_the_deepest_down_dependency_as_cause(make_health: MakeHealth) -> None:
    health, probes = _stack(make_health)
    assert _causes(health) == {
        "redis": ("ok", None),
        "cache-api": ("ok", None),
        "code_review": ("ok", None),
        "flan": ("ok", None),
    }
    probes["redis"].up = probes["cache-api"].up = probes["code_review"].up = False
    assert _causes(health) == {
        "redis": ("down", None),
        "cache-api": ("down", "redis"),
        "code_review": ("down", "redis"),  # the root, not the nearest
        "flan": ("ok", None),
    }
    probes["redis"].up = True  # cache-api still down on its own: it becomes the root
    assert _causes(health) == {
        "redis": ("ok", None),
        "cache-api": ("down", None),
        "code_review": ("down", "cache-api"),
        "flan": ("ok", None),
    }


def test_a_dependent_keeps_its_own_state_next_to_the_cause(make_health: MakeHealth) -> None:
    health, probes = _stack(make_health)
    probes["redis"].up = False
    report = health.run_once()
    review = report.check("code_review")
    assert review is not None
    assert (review.status, review.cause) == ("ok", None)  # cache-api is not down: no cascade
    probes["cache-api"].up = False
    review = health.run_once().check("code_review")
    assert review is not None
    assert review.to_dict()["cause"] == "redis"
    assert review.to_dict()["status"] == "ok"  # its own probe still passes
    assert review.to_dict()["depends_on"] == ["cache-api"]


def test_cycles_are_refused_at_add(make_health: MakeHealth) -> None:
    health = make_health()
    health.add("a", probe=bool, depends_on=("b",))  # b comes later
    health.add("b", probe=bool, depends_on=("c",))
    with pytest.raises(ConfigurationError, match=r"cycle c -> a -> b -> c"):
        health.add("c", probe=bool, depends_on=("a",))
    assert "c" not in health
    with pytest.raises(ConfigurationError, match="itself"):
        health.add("d", probe=bool, depends_on=("d",))
    with pytest.raises(ConfigurationError, match="depends_on"):
        health.add("e", probe=bool, depends_on=(3,))  # type: ignore[arg-type]


def test_the_cause_is_on_the_status_gauge_and_in_the_event(make_health: MakeHealth) -> None:
    health, probes = _stack(make_health)
    health.run_once()
    probes["redis"].up = probes["cache-api"].up = False
    with capture() as cap, capture_logs() as logs:
        health.run_once()
        points = cap.metric_points(semconv.HEALTH_STATUS.name)
    mine = [p.attributes for p in points if p.attributes.get(semconv.HEALTH_CAUSE)]
    assert {(a[semconv.HEALTH_CHECK], a[semconv.HEALTH_CAUSE]) for a in mine} >= {
        ("cache-api", "redis"),
        ("code_review", "redis"),
    }
    assert not [a for a in mine if a[semconv.HEALTH_CHECK] == "redis"]
    changes = {e["check"]: e for e in logs if e["event"] == "modelwatch.health.state_change"}
    assert changes["cache-api"]["cause"] == "redis"
    assert changes["redis"]["cause"] is None


def test_get_graph(make_health: MakeHealth, serve_asgi: Callable[..., Any]) -> None:
    health, probes = _stack(make_health)
    health.add("summarise", probe=lambda: True, kind="analysis", depends_on="hf-endpoint")
    probes["redis"].up = probes["cache-api"].up = False
    health.run_once()
    with serve_asgi(health.asgi()) as base:
        body = httpx.get(f"{base}/graph").json()
    nodes = {n["name"]: n for n in body["nodes"]}
    assert {n: (v["status"], v["cause"]) for n, v in nodes.items()} == {
        "redis": ("down", None),
        "cache-api": ("down", "redis"),
        "code_review": ("ok", "redis"),
        "flan": ("ok", None),
        "summarise": ("ok", None),
        "hf-endpoint": ("unknown", None),
    }
    assert nodes["hf-endpoint"]["declared"] is False
    assert nodes["redis"]["declared"] is True
    assert sorted((e["from"], e["to"]) for e in body["edges"]) == [
        ("cache-api", "redis"),
        ("code_review", "cache-api"),
        ("summarise", "hf-endpoint"),
    ]


def test_an_incident_of_a_dependent_keeps_its_root_cause(make_health: MakeHealth) -> None:
    health, probes = _stack(make_health)
    health.run_once()
    probes["redis"].up = probes["cache-api"].up = False
    health.run_once()
    incidents = {i["check"]: i for i in health.history()["incidents"]}
    assert incidents["cache-api"]["cause"] == "redis"
    assert incidents["redis"]["cause"] is None


def test_a_dependent_down_before_its_dependency_still_gets_the_cause(
    make_health: MakeHealth,
) -> None:
    """The dependent's probe saw the outage first (its dependency's result came a moment
    later): its incident names the root cause once it is known, without a status change."""
    health, probes = _stack(make_health)
    health.run_once()
    probes["redis"].up = probes["cache-api"].up = False
    health.run_once(["cache-api"])  # redis still ok: no cause yet
    assert health.report().check("cache-api").cause is None
    health.run_once(["redis"])
    assert health.report().check("cache-api").cause == "redis"
    (entry,) = [c for c in health.history()["checks"] if c["name"] == "cache-api"]
    assert [(c["previous"], c["status"], c["cause"]) for c in entry["changes"]] == [
        ("unknown", "ok", None),
        ("ok", "down", None),
        ("down", "down", "redis"),  # the cause, found while still down
    ]
    (incident,) = entry["incidents"]
    assert (incident["cause"], incident["end"]) == ("redis", None)


def test_a_failing_dependent_gets_its_dependencies_probed_at_once(
    make_health: MakeHealth, clock: Any, wait_until: Callable[..., None]
) -> None:
    """redis is probed every 60 s, cache-api every 10 s: when cache-api starts failing, redis
    is probed right away (not up to 60 s later), so cache-api's cause is known at once."""
    health = make_health(clock=clock, flap_threshold=1)
    probes = {"redis": Switch(), "cache-api": Switch()}
    calls = {"redis": 0, "cache-api": 0}

    def counted(name: str) -> Callable[[], bool]:
        def probe() -> bool:
            calls[name] += 1
            return probes[name]()

        return probe

    health.add("redis", probe=counted("redis"), kind="dependency", interval_s=60.0)
    health.add(
        "cache-api",
        probe=counted("cache-api"),
        kind="dependency",
        interval_s=10.0,
        depends_on="redis",
    )

    def settled() -> bool:
        return all(c.run is None for c in health._checks.values())

    assert health.run_pending() == 2
    wait_until(settled)
    clock.advance(10.0)
    probes["redis"].up = probes["cache-api"].up = False
    assert health.run_pending() == 1  # only cache-api is due
    wait_until(settled)
    assert calls == {"redis": 1, "cache-api": 2}
    assert health.run_pending() == 1  # redis, brought forward: no time has passed
    wait_until(settled)
    assert calls == {"redis": 2, "cache-api": 2}
    assert {c.name: (c.status, c.cause) for c in health.report().checks} == {
        "redis": ("down", None),
        "cache-api": ("down", "redis"),
    }
    # while cache-api keeps failing, redis is not probed again and again for it
    probes["redis"].up = True
    clock.advance(12.0)  # redis's down interval (12 s) and cache-api's (2 s) both passed
    assert health.run_pending() == 2
    wait_until(settled)
    clock.advance(2.0)
    assert health.run_pending() == 1  # cache-api again; redis (ok now) waits its 60 s
    wait_until(settled)
    assert calls == {"redis": 3, "cache-api": 4}


def test_the_incident_names_the_deepest_cause_seen_not_a_nearer_or_later_one(
    make_health: MakeHealth,
) -> None:
    """code_review's probe failed when cache-api was already down but redis not yet: its
    cause is cache-api at first, then redis; redis recovering before cache-api does not turn
    the incident's cause back into cache-api."""
    health, probes = _stack(make_health)
    health.run_once()
    for name in ("redis", "cache-api", "code_review"):
        probes[name].up = False
    health.run_once(["cache-api"])
    health.run_once(["code_review"])
    assert health.report().check("code_review").cause == "cache-api"
    health.run_once(["redis"])
    assert health.report().check("code_review").cause == "redis"
    probes["redis"].up = True
    health.run_once(["redis"])
    assert health.report().check("code_review").cause == "cache-api"  # live: the nearer one
    (entry,) = [c for c in health.history()["checks"] if c["name"] == "code_review"]
    assert [(c["status"], c["cause"]) for c in entry["changes"]] == [
        ("ok", None),
        ("down", "cache-api"),
        ("down", "redis"),  # deeper: kept; cache-api again later is not
    ]
    (incident,) = entry["incidents"]
    assert incident["cause"] == "redis"
