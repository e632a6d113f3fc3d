"""A tiny Celery app for tests/test_servers.py: proves the `celery_worker` fixture works.

The broker and result backend come from MODELWATCH_TEST_BROKER_URL, which the fixture sets.
"""

from __future__ import annotations

import os

from celery import Celery

broker_url = os.environ.get("MODELWATCH_TEST_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("celery_app_smoke", broker=broker_url, backend=broker_url)
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_transport_options={"polling_interval": 0.1},
)


@app.task(name="smoke.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="smoke.pid")
def pid() -> int:
    """The PID of the process running the task (a pool child under prefork)."""
    return os.getpid()


@app.task(name="smoke.env")
def env(name: str) -> str | None:
    """An environment variable as the worker sees it."""
    return os.environ.get(name)
