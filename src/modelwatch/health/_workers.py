"""Where probes run: a bounded pool of daemon threads for sync probes, the loop async probes
run on, and the clock everything time-based reads.

Why not :class:`concurrent.futures.ThreadPoolExecutor`: its workers are joined at interpreter
exit, so one probe that hangs forever would hang the host's shutdown, and a fixed-size pool
fills up with hung probes until healthy checks starve. Here the registry keeps at most one
probe in flight per check (a hung probe's thread is never replaced while it is stuck), the
pool never grows beyond the number of sync checks, and idle workers leave after a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from modelwatch._clock import TimeSource

Probe = Callable[[], Any]
"""A health probe: a function or ``async def`` taking no arguments.

It passes by returning ``None``, ``True`` or any other truthy value; fails by returning
``False`` or raising; and may return ``"ok"``, ``"degraded"`` or ``"down"`` to say so itself.
"""

_worker_ids = itertools.count(1)


#: What the health registry reads the time from; inject a fake one in tests.
Clock = TimeSource


def is_async_probe(probe: Callable[..., Any]) -> bool:
    """Whether calling ``probe`` gives a coroutine (``async def``, partials and callables)."""
    if inspect.iscoroutinefunction(probe):
        return True
    call = getattr(probe, "__call__", None)  # noqa: B004 - an object with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


class ProbePool:
    """Daemon worker threads for sync probes: at most ``concurrency`` working ones, plus one
    for each probe that is stuck past its timeout.

    A stuck worker stays stuck (Python cannot kill a thread) but is never joined on exit,
    and the registry never gives its check another probe while it is stuck; so the pool
    holds at most ``concurrency + hung checks`` threads, whatever the probes do. Workers
    start on demand and leave after ``idle_timeout_s`` without work.
    """

    def __init__(
        self, name: str = "modelwatch-health", concurrency: int = 8, idle_timeout_s: float = 30.0
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
        self._name = name
        self._idle_timeout_s = idle_timeout_s
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        self._idle = 0
        self._pending = 0
        self._concurrency = concurrency
        self._stuck = 0
        self._closed = False

    @property
    def workers(self) -> int:
        """Worker threads alive now (busy, idle or stuck)."""
        with self._lock:
            return self._workers

    def stuck(self, delta: int) -> None:
        """A worker got stuck past its probe's timeout (+1) or came back (-1)."""
        with self._lock:
            self._stuck = max(0, self._stuck + delta)
            self._grow()

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue ``job``; start a worker if none is free. False once the pool is closed."""
        with self._lock:
            if self._closed:
                return False
            self._pending += 1
            self._queue.put(job)
            self._grow()
            return True

    def _grow(self) -> None:
        """Start workers while work waits for a free one and the limit allows (lock held).

        A new worker counts as idle from birth, so it is never started twice for one job.
        """
        while (
            not self._closed
            and self._pending > self._idle
            and self._workers < self._concurrency + self._stuck
        ):
            self._workers += 1
            self._idle += 1
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{next(_worker_ids)}", daemon=True
            )
            thread.start()

    def close(self) -> None:
        """Let idle workers leave now; busy ones leave when their probe returns."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = self._workers
        for _ in range(workers):
            self._queue.put(None)

    def _work(self) -> None:
        idle = True  # _grow counted this worker as idle already
        while True:
            if not idle:
                with self._lock:
                    self._idle += 1
            idle = False
            try:
                job = self._queue.get(timeout=self._idle_timeout_s)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    if self._pending > self._idle and not self._closed:
                        continue  # a job arrived as we timed out and nobody else is free
                    self._workers -= 1
                    return
            with self._lock:
                self._idle -= 1
                if job is None:
                    self._workers -= 1
                    return
                self._pending -= 1
            job()  # jobs never raise: the registry wraps every probe


class AsyncRunner:
    """Where a registry's async probes run: the application's event loop, or one daemon
    thread with a loop of its own.

    With ``loop`` (the loop that started the registry: see :meth:`Health.start`) every
    probe runs as a task on that loop, where the application's async clients were made
    (an ``httpx.AsyncClient`` or ``AsyncInferenceClient`` is bound to the loop it was first
    used on). Without, a private loop thread is started on first use. Either way probes
    must not block the loop; the registry's deadlines are enforced by its scheduler, not
    by the loop, so a probe that does block it is still reported down at its timeout.
    """

    def __init__(
        self, name: str = "modelwatch-health-loop", loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._external = loop is not None
        self._loop: asyncio.AbstractEventLoop | None = loop
        self._thread: threading.Thread | None = None
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until done

    @property
    def thread(self) -> threading.Thread | None:
        """The private loop's thread, once started (``None`` on the application's loop)."""
        return self._thread

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop probes run on (``None`` until a private one is started)."""
        return self._loop

    def submit(self, factory: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Run ``factory()`` on the loop. The coroutine is created inside the loop, so a
        refused submission leaves no un-awaited coroutine behind. False once closed (or
        once the application's loop has closed)."""
        with self._lock:
            if self._closed:
                return False
            loop = self._ensure_loop()
        if loop.is_closed():
            return False

        def start() -> None:
            task = loop.create_task(factory())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError:  # the loop closed under us
            return False
        return True

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is not None:
            return self._loop
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                _drain(loop)

        self._loop = loop
        self._thread = threading.Thread(target=serve, name=self._name, daemon=True)
        self._thread.start()
        ready.wait(5.0)
        return loop

    def close(self, timeout_s: float = 2.0) -> None:
        """Cancel running probes; stop a private loop and wait (bounded) for its thread.
        The application's loop is left running."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None:
            return
        if self._external:
            tasks = list(self._tasks)
            with contextlib.suppress(RuntimeError):  # the loop closed already
                for task in tasks:
                    loop.call_soon_threadsafe(task.cancel)
            return
        if thread is None:
            return
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:  # already closed
            return
        thread.join(timeout_s)


def _drain(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on a stopped loop, give it a moment, and close it."""
    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks, timeout=1.0))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
