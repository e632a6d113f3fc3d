"""Background probing of a :class:`~modelwatch.health.Health`: the scheduler thread that
runs :meth:`~modelwatch.health.probing.ProbeEngine.run_pending` round after round, and its
start, stop, asyncio and fork lifecycle. Internal to :mod:`modelwatch.health`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Final

from modelwatch._safety import report_internal_error
from modelwatch.health._check import Check
from modelwatch.health._loops import resolve_loop
from modelwatch.health._workers import AsyncRunner, Clock, ProbePool

__all__ = ["BackgroundProbing"]

#: The longest the background scheduler sleeps without looking at the clock again.
_MAX_IDLE_S: Final = 0.5


class BackgroundProbing:
    """Starts and stops the scheduler thread of a :class:`~modelwatch.health.probing.ProbeEngine`
    (which sets the attributes below in its ``__init__``)."""

    _lock: threading.Lock
    _checks: dict[str, Check]
    _clock: Clock
    _pool: ProbePool | None
    _loop: AsyncRunner | None
    _app_loop: asyncio.AbstractEventLoop | None
    _wake: threading.Event
    _stopping: threading.Event
    _scheduler: threading.Thread | None

    def run_pending(self) -> int:
        """One scheduler step (the engine's)."""
        raise NotImplementedError

    def start(self, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start probing in the background (idempotent). Probes start within a short,
        jittered delay; until a check's first result it reports ``unknown``.

        Async probes run on ``loop``; by default on the loop running in the calling thread
        (so ``health.start()`` in a FastAPI lifespan runs them on the application's loop,
        where its async clients work), or, called outside any loop, on a private loop
        thread. See also :meth:`astart`.
        """
        app_loop = resolve_loop(loop)
        with self._lock:
            if self._scheduler is not None and self._scheduler.is_alive():
                return
            if app_loop is not self._app_loop:  # a new loop: later async probes go there
                self._app_loop = app_loop
                if self._loop is not None:
                    self._loop.close()
                    self._loop = None
            self._stopping.clear()
            self._scheduler = threading.Thread(
                target=self._schedule, name="modelwatch-health-scheduler", daemon=True
            )
            self._scheduler.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop probing; wait (at most ``timeout_s``) for the scheduler. Probes still
        running finish on their own; hung ones stay parked on daemon threads."""
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
            pool, self._pool = self._pool, None
            loop, self._loop = self._loop, None
            for check in self._checks.values():  # probes still waiting for a worker: drop
                if check.run is not None and check.run.started is None:
                    check.run.done.set()
                    check.run = None
        self._stopping.set()
        self._wake.set()
        if scheduler is not None:
            scheduler.join(timeout_s)
        if pool is not None:
            pool.close()
        if loop is not None:
            loop.close()

    async def astart(self) -> None:
        """:meth:`start` from async code: async probes run on the calling loop::

        @contextlib.asynccontextmanager
        async def lifespan(app):
            await health.astart()
            yield
            await health.astop()
        """
        self.start(loop=asyncio.get_running_loop())

    async def astop(self, timeout_s: float = 5.0) -> None:
        """:meth:`stop` from async code, without blocking the loop while it waits."""
        await asyncio.to_thread(self.stop, timeout_s)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The application's loop async probes run on (``None``: a private loop thread)."""
        return self._app_loop

    @property
    def running(self) -> bool:
        """Whether background probing is on."""
        scheduler = self._scheduler
        return scheduler is not None and scheduler.is_alive()

    def _after_fork(self) -> None:
        """In a forked child: the parent's threads do not exist here. Forget them (and any
        lock a parent thread held at the fork), keep the checks and their results, and
        leave probing stopped: call :meth:`start` in the child (e.g. in a worker hook)."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._scheduler = None
        self._pool = None
        self._loop = None
        self._app_loop = None
        for check in self._checks.values():
            if check.run is not None:
                check.run.done.set()
                check.run = None
            check.next_due = None

    def _tick(self) -> None:
        """Called on every scheduler round; :class:`Health` watches breakers here."""

    def _schedule(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.run_pending()
                self._tick()
                delay = self._until_next()
            except Exception as exc:  # never let the scheduler die
                report_internal_error("health.scheduler", exc)
                delay = _MAX_IDLE_S
            self._wake.wait(delay)

    def _until_next(self) -> float:
        with self._lock:
            now = self._clock.monotonic()
            probed = [c for c in self._checks.values() if c.probe is not None]
            if any(c.next_due is None for c in probed):
                return 0.0
            moments = [c.next_due for c in probed if c.next_due is not None]
            moments += [
                c.run.deadline
                for c in probed
                if c.run is not None and not c.run.timed_out and c.run.started is not None
            ]
        if not moments:
            return _MAX_IDLE_S
        return min(max(min(moments) - now, 0.0), _MAX_IDLE_S)
