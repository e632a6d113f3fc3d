"""Real Celery workers against the Redis broker."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from support.servers._process import (
    LOCALHOST,
    TESTS_DIR,
    ManagedProcess,
    _descendants,
    _Stack,
    require_server,
    spawn,
    wait_until,
)
from support.servers._redis import RedisServer

# --------------------------------------------------------------------------------------------
# Celery
# --------------------------------------------------------------------------------------------

BROKER_ENV = "MODELWATCH_TEST_BROKER_URL"


class CeleryWorker:
    """A running `celery -A app worker`; `stop()` makes a warm shutdown and returns its output."""

    def __init__(
        self, process: ManagedProcess, app: str, hostname: str, broker_url: str, pool: str
    ) -> None:
        self.process = process
        self.app = app
        self.hostname = hostname
        self.broker_url = broker_url
        self.pool = pool

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        """The worker's log (stdout and stderr) so far."""
        return self.process.output

    def children(self) -> list[int]:
        """PIDs of the worker's child processes (the prefork pool)."""
        return _descendants(self.pid)

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """A Celery app bound to this worker's broker and result backend, closed at exit."""
        from celery import Celery

        app = Celery("modelwatch-test-client", broker=self.broker_url, backend=self.broker_url)
        try:
            yield app
        finally:
            app.close()

    def call(self, task: str, *args: Any, timeout: float = 15.0, **kwargs: Any) -> Any:
        """Send task `task` by name and wait for its result (raises the task's error)."""
        with self.client() as app:
            result = app.send_task(task, args=args, kwargs=kwargs)
            try:
                return result.get(timeout=timeout)
            finally:
                result.forget()

    def stop(self, timeout: float = 30.0) -> str:
        """Warm shutdown (SIGTERM to the main PID: running tasks finish); returns the output.

        After `timeout` s the worker is killed. Its pool children are checked to be gone.
        """
        self.process.stop(signal.SIGTERM, timeout)
        if self.process.leaked:
            raise AssertionError(
                f"celery worker {self.pid} left children running: {self.process.leaked}"
            )
        return self.output


CeleryWorkerFactory = Callable[..., CeleryWorker]


def _stop_if_running(worker: CeleryWorker) -> None:
    if worker.process.running:
        worker.stop()


@pytest.fixture
def celery_worker(redis_server: RedisServer, tmp_path: Path) -> Iterator[CeleryWorkerFactory]:
    """Factory: start a real Celery worker against the Redis broker; stopped after the test.

    `celery_worker(app="support.celery_app_smoke", pool="solo", concurrency=None,
    extra_args=(), env=None, broker_url=None, ready_timeout=30.0)`. The broker and result
    backend default to a fresh Redis database and are passed in the environment as
    CELERY_BROKER_URL, CELERY_RESULT_BACKEND and MODELWATCH_TEST_BROKER_URL; tests/ is on
    PYTHONPATH so modules under tests/support import as `support.<name>`.

        worker = celery_worker(pool="prefork", concurrency=2)
        assert worker.call("smoke.add", 2, 3) == 5
        output = worker.stop()   # warm shutdown; optional, the fixture stops it too
    """
    python = require_server("celery")
    stack = _Stack()
    counter = itertools.count(1)

    def start(
        app: str = "support.celery_app_smoke",
        *,
        pool: str = "solo",
        concurrency: int | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        broker_url: str | None = None,
        ready_timeout: float = 30.0,
    ) -> CeleryWorker:
        url = broker_url or redis_server.fresh_url()
        hostname = f"test{next(counter)}-{uuid.uuid4().hex[:6]}@{LOCALHOST}"
        argv = [
            python, "-m", "celery", "-A", app, "worker",
            f"--pool={pool}", "--loglevel=INFO", f"--hostname={hostname}",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        if concurrency is not None:
            argv.append(f"--concurrency={concurrency}")
        argv.extend(extra_args)
        python_path = os.pathsep.join(
            p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p
        )
        full_env = {
            **os.environ,
            "PYTHONPATH": python_path,
            "PYTHONUNBUFFERED": "1",
            "CELERY_BROKER_URL": url,
            "CELERY_RESULT_BACKEND": url,
            BROKER_ENV: url,
            **(env or {}),
        }
        log = tmp_path / f"celery-{hostname.split('@', maxsplit=1)[0]}.log"
        process = spawn("celery", argv, log, env=full_env, cwd=TESTS_DIR)
        worker = CeleryWorker(process, app, hostname, url, pool)
        stack.push(lambda: _stop_if_running(worker))
        try:
            wait_until(
                lambda: not process.running or f"{hostname} ready." in process.output,
                timeout=ready_timeout,
                message=f"celery worker {hostname} to be ready",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- worker output ---\n{process.output}") from None
        if not process.running:
            raise AssertionError(
                f"celery worker exited with status {process.popen.returncode}:\n{process.output}"
            )
        return worker

    try:
        yield start
    finally:
        stack.close()
