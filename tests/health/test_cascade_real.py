"""Cascades with real servers: a real Redis stopped and started under checks that need it.

1. In process: a Health whose ``cache-api`` and ``code_review`` checks use a real Redis
   (redis-py) and declare it as their dependency. Redis is stopped: every check reports its
   own state plus ``cause: "redis"``, in the report and in ``GET /graph``; Redis is started
   again on the same port: every check recovers and no cause is left.
2. Through real Prometheus + Alertmanager, loaded with the generated rules and the generated
   Alertmanager config (windows shrunk 60x, 1 s scrape/evaluation, 1 s group timings). A
   service (tests/health/cascade_engine.py, its own process) probes the same kind of stack.
   A Redis outage reaches the webhook as exactly one notification, for ``redis``; the
   dependents' alerts fire in Prometheus but Alertmanager holds them back. After Redis is
   back and everything resolved, ``cache-api`` fails on its own (Redis up): its own
   notification arrives, and ``code_review`` (which needs ``cache-api``) stays held back.

Set MODELWATCH_CASCADE_REPORT=path.json to keep the measured timings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from modelwatch.health import Health
from modelwatch.ops.alertmanager import AlertmanagerOptions, render_alertmanager
from modelwatch.ops.rules import ROOT_CAUSE, RuleOptions, render_rules
from support.servers import (
    AlertmanagerFactory,
    PrometheusFactory,
    RedisServer,
    WebhookReceiver,
    free_port,
    spawn,
    wait_until,
)

pytestmark = [pytest.mark.servers]

ENGINE = Path(__file__).with_name("cascade_engine.py")
JOB = "cascade-engine"
DEPENDENTS = ("cache-api", "code_review")
#: production windows / 60 (1 s scrape and evaluation); the health alert's `for` is 3 s, a
#: margin on a loaded machine for the moment a dependent is down before its cause is known
RULES = dataclasses.replace(RuleOptions(evaluation_interval_s=1).scaled(60), health_for_s=3)
HEALTH_DOWN = "ModelwatchHealthCheckDown"
CHECK = "modelwatch_health_check"
CAUSE = "modelwatch_health_cause"


def _redis_stack(make_health: Callable[..., Health], server: RedisServer) -> Health:
    client = redis.Redis(
        host=server.host,
        port=server.port,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    health = make_health(flap_threshold=1)
    health.add("redis", probe=client.ping, kind="dependency", critical=True, timeout_s=2.0)
    health.add(
        "cache-api",
        probe=lambda: client.get("cache-api:fail") is None,
        kind="dependency",
        depends_on="redis",
        timeout_s=2.0,
    )
    health.add(
        "code_review",
        probe=lambda: client.exists("code_review:fail") == 0,
        kind="analysis",
        depends_on="cache-api",
        timeout_s=2.0,
    )
    health.add("google/flan-t5-large", probe=lambda: True, timeout_s=2.0)
    return health


def _states(health: Health) -> dict[str, tuple[str, str | None]]:
    return {c.name: (c.status, c.cause) for c in health.run_once().checks}


def test_stopping_redis_cascades_to_its_dependents_and_all_recover(
    make_health: Callable[..., Health],
    redis_server_factory: Callable[[], RedisServer],
    serve_wsgi: Callable[..., Any],
) -> None:
    server = redis_server_factory()
    health = _redis_stack(make_health, server)
    assert _states(health) == {
        "redis": ("ok", None),
        "cache-api": ("ok", None),
        "code_review": ("ok", None),
        "google/flan-t5-large": ("ok", None),
    }

    server.stop()
    assert _states(health) == {
        "redis": ("down", None),
        "cache-api": ("down", "redis"),
        "code_review": ("down", "redis"),  # the root cause, not the nearest dependency
        "google/flan-t5-large": ("ok", None),
    }
    report = health.report()
    assert report.status == "down"  # redis is critical
    assert "ConnectionError" in (report.check("redis").error or "")
    with serve_wsgi(health.wsgi()) as url:
        graph = httpx.get(f"{url}/graph").json()
        body = httpx.get(f"{url}/").json()
    nodes = {n["name"]: (n["status"], n["cause"]) for n in graph["nodes"]}
    assert nodes == {
        "redis": ("down", None),
        "cache-api": ("down", "redis"),
        "code_review": ("down", "redis"),
        "google/flan-t5-large": ("ok", None),
    }
    assert sorted((e["from"], e["to"]) for e in graph["edges"]) == [
        ("cache-api", "redis"),
        ("code_review", "cache-api"),
    ]
    assert {c["name"]: c["cause"] for c in body["checks"]}["code_review"] == "redis"

    server.restart()
    assert _states(health) == {
        "redis": ("ok", None),
        "cache-api": ("ok", None),
        "code_review": ("ok", None),
        "google/flan-t5-large": ("ok", None),
    }
    assert health.report().status == "ok"
    with serve_wsgi(health.wsgi()) as url:
        graph = httpx.get(f"{url}/graph").json()
    assert {n["name"]: (n["status"], n["cause"]) for n in graph["nodes"]} == {
        "redis": ("ok", None),
        "cache-api": ("ok", None),
        "code_review": ("ok", None),
        "google/flan-t5-large": ("ok", None),
    }
    # the outage is in the history: one incident per check, each with its root cause
    incidents = {
        entry["name"]: [(i["cause"], i["end"] is not None) for i in entry["incidents"]]
        for entry in health.history()["checks"]
    }
    assert incidents["cache-api"] == [("redis", True)]
    assert incidents["code_review"] == [("redis", True)]
    assert incidents["redis"] == [(None, True)]


# ----------------------------------------------------------------- real alerting pipeline
def _health_notifications(hook: WebhookReceiver) -> list[tuple[str, str]]:
    """(check, status) of every health alert in every webhook payload, in arrival order."""
    return [
        (a["labels"][CHECK], a["status"])
        for p in hook.payloads()
        for a in p.get("alerts", [])
        if a["labels"].get("alertname") == HEALTH_DOWN
    ]


def _firing(hook: WebhookReceiver, check: str) -> int:
    """How many notifications carried ``check``'s health alert as firing."""
    return sum(
        1 for name, status in _health_notifications(hook) if (name, status) == (check, "firing")
    )


def _held_back(am: Any, checks: tuple[str, ...]) -> list[dict[str, Any]] | None:
    """The health alerts of ``checks`` once Alertmanager holds every one of them back."""
    held = [
        a
        for a in am.alerts()
        if a["labels"].get("alertname") == HEALTH_DOWN
        and a["labels"].get(CHECK) in checks
        and a["status"]["state"] == "suppressed"
        and a["status"]["inhibitedBy"]
    ]
    return held if {a["labels"][CHECK] for a in held} == set(checks) else None


def _prom_firing(prom: Any, checks: tuple[str, ...]) -> dict[str, dict[str, str]] | None:
    found = {
        a["labels"][CHECK]: a["labels"]
        for a in prom.alerts()
        if a["labels"].get("alertname") == HEALTH_DOWN and a["state"] == "firing"
    }
    return found if set(checks) <= set(found) else None


def _engine_ports(port_file: Path, process: Any) -> dict[str, int]:
    def ports() -> dict[str, int] | None:
        assert process.running, process.output
        return json.loads(port_file.read_text()) if port_file.exists() else None

    return wait_until(ports, timeout=20, message="the engine's ports")


def _checks(url: str) -> dict[str, tuple[str, str | None]]:
    body = httpx.get(f"{url}/", timeout=5.0).json()
    return {c["name"]: (c["status"], c["cause"]) for c in body["checks"]}


@pytest.mark.slow
def test_redis_outage_notifies_once_for_redis_and_a_dependent_failing_alone_notifies(
    tmp_path: Path,
    redis_server_factory: Callable[[], RedisServer],
    prometheus_server: PrometheusFactory,
    alertmanager_server: AlertmanagerFactory,
    webhook_receiver: WebhookReceiver,
) -> None:
    hook = webhook_receiver
    base = hook.url.rsplit("/", 1)[0]
    report: dict[str, Any] = {}
    started = time.monotonic()
    server = redis_server_factory()
    port_file = tmp_path / "engine.ports"
    engine = spawn(
        "cascade-engine",
        [sys.executable, str(ENGINE), str(server.port), str(port_file)],
        tmp_path / "engine.log",
    )
    scope: dict[str, Any] = {}
    try:
        ports = _engine_ports(port_file, engine)
        health_url = f"http://127.0.0.1:{ports['health']}"
        scope["am"] = am = alertmanager_server(
            render_alertmanager(
                AlertmanagerOptions(
                    webhook_url=hook.url,
                    slack_api_url=f"{base}/slack",
                    pagerduty_url=f"{base}/pagerduty",
                    smtp_smarthost=f"127.0.0.1:{free_port()}",  # nothing listens: mail fails
                    smtp_require_tls=False,
                    group_wait_s=1,
                    group_interval_s=1,
                ),
                RULES,
            )
        )
        scope["prom"] = prom = prometheus_server(
            scrape_targets=[f"127.0.0.1:{ports['metrics']}"],
            rules=render_rules(RULES),
            alertmanagers=[am],
            job_name=JOB,
        )
        prom.wait_for_targets_up()
        prom.wait_for_value(
            f'count(modelwatch_health_status{{job="{JOB}"}} == 1)', lambda v: v == 4
        )
        assert not [a for a in prom.alerts() if a["labels"]["alertname"] == HEALTH_DOWN]

        # ---- Redis goes away
        outage = time.monotonic()
        server.stop()
        wait_until(
            lambda: (
                _checks(health_url)
                == {
                    "redis": ("down", None),
                    "cache-api": ("down", "redis"),
                    "code_review": ("down", "redis"),
                    "google/flan-t5-large": ("ok", None),
                }
            ),
            timeout=10,
            message="the engine's checks down with cause redis",
        )
        graph = httpx.get(f"{health_url}/graph", timeout=5.0).json()
        assert {n["name"]: n["cause"] for n in graph["nodes"]} == {
            "redis": None,
            "cache-api": "redis",
            "code_review": "redis",
            "google/flan-t5-large": None,
        }
        hook.wait_for_alert(HEALTH_DOWN, timeout=30)
        report["outage_to_redis_notification_s"] = round(time.monotonic() - outage, 2)
        # every check's alert fires in Prometheus, the dependents' with their root cause...
        firing = wait_until(
            lambda: _prom_firing(prom, ("redis", *DEPENDENTS)), timeout=15, message="all firing"
        )
        assert {n: (firing[n].get(CAUSE), firing[n][ROOT_CAUSE]) for n in firing} == {
            "redis": (None, "redis"),
            "cache-api": ("redis", "redis"),
            "code_review": ("redis", "redis"),
        }
        # ...and Alertmanager holds the dependents' back, inhibited by redis's
        held = wait_until(
            lambda: _held_back(am, DEPENDENTS), timeout=15, message="dependents inhibited"
        )
        report["inhibited_during_outage"] = sorted(a["labels"][CHECK] for a in held)

        # ---- Redis is back: everything recovers and resolves
        back = time.monotonic()
        server.restart()
        wait_until(
            lambda: all(s == ("ok", None) for s in _checks(health_url).values()),
            timeout=10,
            message="every check ok again",
        )
        hook.wait_for_alert(HEALTH_DOWN, status="resolved", timeout=30)
        report["redis_back_to_resolved_s"] = round(time.monotonic() - back, 2)
        wait_until(
            lambda: not [a for a in prom.alerts() if a["labels"]["alertname"] == HEALTH_DOWN],
            timeout=15,
            message="no health alert left in Prometheus",
        )
        wait_until(
            lambda: not [a for a in am.alerts() if a["labels"]["alertname"] == HEALTH_DOWN],
            timeout=15,
            message="no health alert left in Alertmanager",
        )
        report["outage_notifications"] = _health_notifications(hook)
        assert _firing(hook, "redis") == 1
        assert _firing(hook, "cache-api") == _firing(hook, "code_review") == 0

        # ---- cache-api fails on its own, Redis up: its own notification arrives
        alone = time.monotonic()
        server.command(["SET", "cascade:fail:cache-api", "1"])
        wait_until(
            lambda: (
                _checks(health_url)["cache-api"] == ("down", None)
                and _checks(health_url)["code_review"] == ("down", "cache-api")
            ),
            timeout=10,
            message="cache-api down on its own",
        )

        def cache_api_notified() -> bool:
            return _firing(hook, "cache-api") > 0

        wait_until(cache_api_notified, timeout=30, message="cache-api's own notification")
        report["alone_to_cache_api_notification_s"] = round(time.monotonic() - alone, 2)
        held = wait_until(
            lambda: _held_back(am, ("code_review",)), timeout=15, message="code_review inhibited"
        )
        assert held[0]["labels"][ROOT_CAUSE] == "cache-api"
        server.command(["DEL", "cascade:fail:cache-api"])
        wait_until(
            lambda: ("cache-api", "resolved") in _health_notifications(hook),
            timeout=30,
            message="cache-api resolved",
        )
        notifications = _health_notifications(hook)
        report["all_notifications"] = notifications
        firing_counts = {n: _firing(hook, n) for n in ("redis", *DEPENDENTS)}
        report["firing_notifications"] = firing_counts
        assert firing_counts == {"redis": 1, "cache-api": 1, "code_review": 0}
        # nothing but health alerts was sent (no check is critical: no NotReady here)
        names = {a["labels"]["alertname"] for a in hook.alerts()}
        assert names == {HEALTH_DOWN}, names
    except BaseException:
        with contextlib.suppress(Exception):
            scope["webhook"] = _health_notifications(hook)
            scope["prometheus"] = [(a["labels"], a["state"]) for a in scope["prom"].alerts()]
            scope["alertmanager"] = [(a["labels"], a["status"]) for a in scope["am"].alerts()]
        print(json.dumps({"report": report, **scope, "engine": engine.output[-3000:]}, default=str))
        raise
    finally:
        engine.stop()
    report["test_s"] = round(time.monotonic() - started, 2)
    print(json.dumps(report, indent=2))
    target = os.environ.get("MODELWATCH_CASCADE_REPORT")
    if target:
        Path(target).write_text(json.dumps(report, indent=2) + "\n")
