"""A Celery prefork worker (concurrency 2) in a fleet, on real Redis and a real Prometheus:
each child configured in worker_process_init serves /metrics on its own port of a range and is
discovered through file_sd; task metrics and breaker state reach Prometheus; a breaker opened in
one child is seen open by the other child and by this (web) process through Redis."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import modelwatch
from support.fleet import discovered, file_sd_config
from support.otlp import OtlpReceiver
from support.servers import (
    CeleryWorkerFactory,
    PrometheusFactory,
    RedisServer,
    free_port,
    wait_until,
)

pytestmark = [pytest.mark.servers, pytest.mark.slow]

#: The policy syncs every 0.5 s (``sync_interval_s``); a loaded machine (2 cores, several
#: test runs) gets ten times that before a process must see a breaker another one opened.
SYNC_DEADLINE_S = 5.0


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
        lambda: len(found := discovered(sd_dir)) == 2 and found,
        timeout=30,
        message="both pool children registered",
    )
    pids = set(children)
    assert pids == set(worker.children())
    prom = prometheus_server(file_sd_config("celery", sd_dir))
    prom.wait_for_targets_up(2, timeout=30)

    name = f"fleet-model-{uuid.uuid4().hex[:6]}"
    with worker.client() as app:
        sums = [app.send_task("fleet.add", args=(i, i)) for i in range(10)]
        assert [r.get(timeout=30)["sum"] for r in sums] == [2 * i for i in range(10)]

        def ask_both(within_s: float) -> list[dict[str, Any]]:
            """Ask the breaker's state until both children answered; every answer."""
            answers: list[dict[str, Any]] = []

            def both_answered() -> bool:
                batch = [app.send_task("fleet.state", args=(name, within_s)) for _ in range(4)]
                answers.extend(r.get(timeout=60) for r in batch)
                return {a["pid"] for a in answers} == pids

            wait_until(both_answered, timeout=60, message="both children to answer")
            return answers

        # both children hold the breaker, closed, before one of them opens it
        assert {a["state"] for a in ask_both(0.0)} == {"closed"}
        opened = app.send_task("fleet.open", args=(name,)).get(timeout=30)
        assert opened["state"] == "open"
        assert opened["pid"] in pids
        # each ask polls its child's own breaker for at most SYNC_DEADLINE_S: an answer
        # "open" means that child saw it open within that time of being asked
        answers = ask_both(SYNC_DEADLINE_S)
        assert [a for a in answers if a["state"] != "open"] == []
        other = [a for a in answers if a["pid"] != opened["pid"]]
        assert other  # the child that did not open it sees it open too
        assert all(a["waited_s"] <= SYNC_DEADLINE_S for a in other)

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

    def circuit_states() -> dict[str, float]:
        query = f'{{__name__=~"modelwatch_circuit_state.*",modelwatch_circuit="{name}"}}'
        return {r["metric"]["pid"]: float(r["value"][1]) for r in prom.query(query)}

    open_everywhere = {str(pid): 2.0 for pid in pids}  # 2: open
    wait_until(
        lambda: circuit_states() == open_everywhere,
        timeout=30,
        message="both children's breaker open in Prometheus",
    )

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

    # a warm shutdown: each child flushes and removes its discovery file as it leaves
    # (worker_process_shutdown, as when max_tasks_per_child recycles it)
    worker.stop()
    assert discovered(sd_dir) == {}
