"""A Celery prefork worker (concurrency 2) in a fleet, on real Redis and a real Prometheus:
each child configured in worker_process_init serves /metrics on its own port of a range and is
discovered through file_sd; task metrics and breaker state reach Prometheus; a breaker opened in
one child is seen open by the other child and by this (web) process through Redis."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

import modelwatch
from support.otlp import OtlpReceiver
from support.servers import (
    CeleryWorkerFactory,
    PrometheusFactory,
    RedisServer,
    free_port,
    wait_until,
)

pytestmark = [pytest.mark.servers, pytest.mark.slow]

SYNC_DEADLINE_S = 5.0  # the policy syncs every 0.5 s; a loaded machine gets ten times that


def test_prefork_children_are_scraped_and_share_breaker_state(
    celery_worker: CeleryWorkerFactory,
    prometheus_server: PrometheusFactory,
    redis_server: RedisServer,
    otlp_receiver: OtlpReceiver,
    tmp_path: Path,
) -> None:
    sd_dir = tmp_path / "sd"
    base = free_port()
    redis_url = redis_server.fresh_url()
    worker = celery_worker(
        "integrations.celery_fleet_tasks",
        pool="prefork",
        concurrency=2,
        env={
            "MODELWATCH_PROMETHEUS_PORT": f"{base}-{base + 15}",
            "MODELWATCH_PROMETHEUS_SD_DIR": str(sd_dir),
            "MODELWATCH_TEST_REDIS_URL": redis_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.http_endpoint,
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
        },
    )
    children = wait_until(
        lambda: len(files := list(sd_dir.glob("*.json"))) == 2 and files,
        timeout=30,
        message="both pool children registered",
    )
    pids = {int(json.loads(f.read_text())[0]["labels"]["pid"]) for f in children}
    assert pids == set(worker.children())
    prom = prometheus_server(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "celery",
                        "file_sd_configs": [
                            {"files": [str(sd_dir / "*.json")], "refresh_interval": "1s"}
                        ],
                    }
                ],
            }
        )
    )
    prom.wait_for_targets_up(2, timeout=30)

    name = f"fleet-model-{uuid.uuid4().hex[:6]}"
    with worker.client() as app:
        sums = [app.send_task("fleet.add", args=(i, i)) for i in range(10)]
        assert [r.get(timeout=30)["sum"] for r in sums] == [2 * i for i in range(10)]
        opened = app.send_task("fleet.open", args=(name,)).get(timeout=30)
        assert opened["state"] == "open"

        def every_child_sees_it_open() -> set[int] | None:
            answers: list[dict[str, Any]] = [
                r.get(timeout=30)
                for r in [app.send_task("fleet.state", args=(name,)) for _ in range(6)]
            ]
            seen = {a["pid"] for a in answers if a["state"] == "open"}
            closed = [a for a in answers if a["state"] != "open"]
            return seen if seen == pids and not closed else None

        wait_until(every_child_sees_it_open, timeout=30, message="both children see it open")

    # the web process: the same breaker name over the same Redis
    import redis

    from modelwatch.resilience import redis_storage

    web = modelwatch.circuit(
        name,
        modelwatch.BreakerPolicy(
            consecutive_failures=2,
            open_s=50.0,
            sync_interval_s=0.5,
            storage=redis_storage(redis.Redis.from_url(redis_url, decode_responses=False)),
        ),
    )
    wait_until(
        lambda: web.breaker.state == "open",
        timeout=SYNC_DEADLINE_S,
        message="the web process to see the breaker open",
    )

    # both children's task metrics and breaker state reach Prometheus
    tasks = (
        'sum(modelwatch_task_duration_seconds_count{job="celery",modelwatch_task_name="fleet.add"})'
    )
    wait_until(lambda: prom.query_value(tasks) == 10, timeout=30, message="10 tasks counted")
    states = wait_until(
        lambda: (
            (
                found := {
                    r["metric"]["pid"]: float(r["value"][1])
                    for r in prom.query(
                        f'{{__name__=~"modelwatch_circuit_state.*",modelwatch_circuit="{name}"}}'
                    )
                }
            )
            and len(found) == 2
            and found
        ),
        timeout=30,
        message="both children's breaker state in Prometheus",
    )
    assert states == {str(pid): 2.0 for pid in pids}

    # and over OTLP: each child its own resource, the cumulative counts adding up
    def pushed() -> dict[str, int] | None:
        latest: dict[str, int] = {}
        for point in otlp_receiver.metric_points("modelwatch.task.duration"):
            if point.attributes.get("modelwatch.task.name") != "fleet.add":
                continue
            key = str(point.resource["service.instance.id"])
            latest[key] = max(latest.get(key, 0), point.count or 0)
        return latest if sum(latest.values()) == 10 else None

    per_child = wait_until(pushed, timeout=30, message="10 tasks pushed over OTLP")
    pushing_pids = {
        p.resource["process.pid"] for p in otlp_receiver.metric_points("modelwatch.task.duration")
    }
    assert pushing_pids <= pids
    assert len(per_child) == len(pushing_pids)  # one service.instance.id per child
