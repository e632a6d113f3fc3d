"""The Celery app of the fleet test (``-A integrations.celery_fleet_tasks``): modelwatch is
configured in each prefork child (``worker_process_init``) from the environment, so each child
serves /metrics on its own port of MODELWATCH_PROMETHEUS_PORT and registers for file_sd; breaker
state is shared through the Redis of MODELWATCH_TEST_REDIS_URL."""

from __future__ import annotations

import contextlib
import os
import time
from functools import cache
from typing import Any

import redis
from celery import Celery, signals

import modelwatch
import modelwatch.celery
from modelwatch.resilience import redis_storage

broker_url = os.environ.get("MODELWATCH_TEST_BROKER_URL", "memory://")
app = Celery("modelwatch_fleet_tasks", broker=broker_url, backend=broker_url)
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
)
modelwatch.celery.instrument(app)


@signals.worker_process_init.connect
def _configure_child(**_: Any) -> None:
    modelwatch.configure(service_name="celery-fleet")  # MODELWATCH_* from the environment


def policy() -> modelwatch.BreakerPolicy:
    client = redis.Redis.from_url(os.environ["MODELWATCH_TEST_REDIS_URL"], decode_responses=False)
    return modelwatch.BreakerPolicy(
        consecutive_failures=2, open_s=50.0, sync_interval_s=0.5, storage=redis_storage(client)
    )


@cache
def breaker(name: str) -> modelwatch.circuit:
    return modelwatch.circuit(name, policy())


def _model_down(prompt: str) -> str:
    raise ConnectionError("model endpoint refused the connection")


@app.task(name="fleet.open")
def open_breaker(name: str) -> dict[str, Any]:
    """Two failing calls: the breaker opens in this child (and in Redis)."""
    guarded = breaker(name)(_model_down)
    for _ in range(2):
        with contextlib.suppress(ConnectionError, modelwatch.CircuitOpenError):
            guarded("x")
    return {"pid": os.getpid(), "state": breaker(name).breaker.state}


@app.task(name="fleet.state")
def state(name: str, within_s: float) -> dict[str, Any]:
    """The breaker's state as this child sees it: polled until open, for at most
    ``within_s`` from the ask (the shared state is re-read every ``sync_interval_s``); then
    held 0.2 s, so that both children get some of the asks."""
    guard = breaker(name)
    started = time.monotonic()
    while (seen := guard.breaker.state) != "open" and time.monotonic() - started < within_s:
        time.sleep(0.02)
    waited = time.monotonic() - started
    time.sleep(0.2)
    return {"pid": os.getpid(), "state": seen, "waited_s": waited}


@app.task(name="fleet.add")
def add(x: int, y: int) -> dict[str, Any]:
    time.sleep(0.05)
    return {"pid": os.getpid(), "sum": x + y}
