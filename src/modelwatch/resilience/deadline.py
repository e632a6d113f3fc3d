"""Deadlines and per-attempt timeouts that modelwatch enforces itself.

A coroutine attempt is cancelled at its timeout. A synchronous backend cannot be
interrupted, so each sync attempt runs on a bounded pool of daemon worker threads and the
caller waits at most until the attempt's timeout: a hung backend is *abandoned* (its thread
finishes or hangs on its own; its result is dropped) and never holds the caller past the
deadline. The pool is bounded so a hung backend cannot spawn threads without limit, and
its threads are daemons so a hung call cannot block interpreter exit either.
"""

from __future__ import annotations

import _thread
import asyncio
import contextvars
import math
import queue
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from modelwatch._clock import Clock
from modelwatch.errors import ModelwatchError
from modelwatch.resilience import _timeouts

__all__ = ["AttemptTimeoutError", "Deadline", "WorkerPool", "await_within", "shared_pool"]

T = TypeVar("T")


class AttemptTimeoutError(ModelwatchError, TimeoutError):
    """modelwatch abandoned an attempt at its timeout (error kind ``timeout``)."""

    def __init__(self, what: str, timeout_s: float) -> None:
        self.what = what
        self.timeout_s = timeout_s
        super().__init__(f"{what} did not finish within {timeout_s:.3g} s")


class Deadline:
    """The point in (clock) time by which a whole call must be over."""

    __slots__ = ("_clock", "at", "started")

    def __init__(self, clock: Clock, timeout_s: float | None) -> None:
        self._clock = clock
        self.started = clock.monotonic()  #: clock time the call began
        self.at = math.inf if timeout_s is None else self.started + timeout_s

    def remaining(self) -> float:
        """Seconds left (``inf`` without a deadline, never negative)."""
        if self.at == math.inf:
            return math.inf
        return max(0.0, self.at - self._clock.monotonic())

    def cap(self, timeout_s: float | None) -> float:
        """The smaller of ``timeout_s`` and the time left."""
        left = self.remaining()
        return left if timeout_s is None else min(left, timeout_s)


class _Task:
    """One sync attempt handed to a worker: a lock the caller waits on, no Future.

    ``state`` is 0 while queued, 1 once a worker took it, 2 once the caller gave up on it
    while it was still queued (it is then skipped: an abandoned attempt that never started
    never starts).
    """

    __slots__ = ("args", "ctx", "done", "error", "fn", "kwargs", "notify", "result", "state")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Any,
        notify: queue.SimpleQueue[Any] | None = None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.ctx = contextvars.copy_context()
        self.done = _thread.allocate_lock()
        self.done.acquire()
        self.result: Any = None
        self.error: BaseException | None = None
        self.state = 0
        self.notify = notify  # told when the task ends (hedged attempts wait on several)

    def abandon(self) -> None:
        """The caller gives up on it: if still queued it never starts; if running, it
        finishes on its own and its result is dropped."""
        if self.state == 0:
            self.state = 2

    def execute(self) -> None:
        if self.state:
            return
        self.state = 1
        try:
            self.result = self.ctx.run(self.fn, *self.args, **(self.kwargs or {}))
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.release()
            if self.notify is not None:
                self.notify.put(self)


class WorkerPool:
    """A bounded pool of daemon threads that run sync attempts the caller may abandon.

    Threads are started on demand up to ``max_workers``, reused, and leave after ``idle_s``
    without work (so a router that is no longer used leaves no threads behind); each task
    runs in a copy of the submitter's context, so the attempt's span is current inside the backend.
    :meth:`run` hands a task over with one lock (the cheapest hand-off CPython offers);
    :meth:`submit` returns a :class:`~concurrent.futures.Future` for asyncio callers.
    """

    def __init__(
        self, max_workers: int = 64, name: str = "modelwatch-attempt", idle_s: float = 30.0
    ) -> None:
        self._max = max_workers
        self._idle_s = idle_s
        self._name = name
        self._queue: queue.SimpleQueue[_Task | tuple[Future[Any], _Task] | None] = (
            queue.SimpleQueue()
        )
        self._closed = False
        self._idle = 0  # workers waiting for a task (updated under _lock)
        self._lock = threading.Lock()
        self._threads = 0

    @property
    def threads(self) -> int:
        """Worker threads alive now."""
        return self._threads

    def close(self) -> None:
        """Let every worker leave: idle ones now, busy ones when their task ends.

        Tasks submitted afterwards still run (each on a thread that leaves after it).
        """
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._queue.put(None)

    def _put(self, item: _Task | tuple[Future[Any], _Task]) -> None:
        self._queue.put(item)
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # a waiting worker will take it
                return
            if self._threads >= self._max:
                return  # every worker is busy: it waits in the queue (and may time out there)
            self._threads += 1  # a new worker, for this task
            name = f"{self._name}-{self._threads}"
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def submit(
        self, fn: Callable[..., T], args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on a worker, in a copy of the current context."""
        future: Future[T] = Future()
        self._put((future, _Task(fn, args, kwargs)))
        return future

    def start(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Any,
        notify: queue.SimpleQueue[Any],
    ) -> _Task:
        """Start ``fn(*args, **kwargs)`` on a worker and return at once: the task is put on
        ``notify`` when it ends (``.error`` or ``.result``); ``.abandon()`` gives up on it."""
        task = _Task(fn, args, kwargs, notify)
        self._put(task)
        return task

    def run(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: Any,
        timeout_s: float,
        what: str,
    ) -> T:
        """``fn(*args, **kwargs)`` on a worker; wait at most ``timeout_s``, else abandon it
        and raise :class:`AttemptTimeoutError`. The backend's own exception is re-raised
        as the same object."""
        task = _Task(fn, args, kwargs)
        self._put(task)
        try:
            if not task.done.acquire(timeout=-1 if timeout_s == math.inf else timeout_s):
                if task.state == 0:
                    task.state = 2  # still queued: it will be skipped
                raise AttemptTimeoutError(what, timeout_s)
            if task.error is not None:
                raise task.error
            return task.result  # type: ignore[no-any-return]
        finally:
            del task

    def _work(self) -> None:
        counted = False  # is this worker counted in ``_idle``? (a new one comes for a task)
        while True:
            try:
                item = self._queue.get(timeout=self._idle_s)
            except queue.Empty:
                with self._lock:
                    if not counted or self._idle > 0:  # nobody handed it a task: leave
                        if counted:
                            self._idle -= 1
                        self._threads -= 1
                        return
                counted = False  # a task was handed over as the wait ended: take it
                continue
            if item is None:  # close(): leave
                with self._lock:
                    self._threads -= 1
                return
            if isinstance(item, _Task):
                item.execute()
            else:
                future, task = item
                if future.set_running_or_notify_cancel():
                    task.execute()
                    if task.error is not None:
                        future.set_exception(task.error)
                    else:
                        future.set_result(task.result)
                del future, task
            del item
            with self._lock:
                if self._closed:
                    self._threads -= 1
                    return
                self._idle += 1
            counted = True


_shared_pool: WorkerPool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> WorkerPool:
    """The process-wide pool routers use unless given their own."""
    global _shared_pool
    if _shared_pool is None:
        with _shared_lock:
            if _shared_pool is None:
                _shared_pool = WorkerPool()
    return _shared_pool


if sys.version_info >= (3, 11):

    async def await_within(aw: Awaitable[T], timeout_s: float, what: str) -> T:
        """Await ``aw``, cancelling it after ``timeout_s`` with :class:`AttemptTimeoutError`
        (``asyncio.timeout`` semantics, one timer per event loop: see :mod:`._timeouts`)."""
        if timeout_s == math.inf:
            return await aw
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - awaited outside a task (a foreign runner)
            return await asyncio.wait_for(aw, timeout_s)
        loop = asyncio.get_running_loop()
        watch = _timeouts.watch_for(loop)
        guard = watch.add(loop, task, timeout_s)
        try:
            return await aw
        except asyncio.CancelledError:
            if guard.state == _timeouts.EXPIRED and task.uncancel() <= guard.cancelling:
                raise AttemptTimeoutError(what, timeout_s) from None
            raise
        finally:
            watch.done(guard)

else:  # pragma: no cover - Python 3.10

    async def await_within(aw: Awaitable[T], timeout_s: float, what: str) -> T:
        """Await ``aw``, cancelling it after ``timeout_s`` with :class:`AttemptTimeoutError`."""
        if timeout_s == math.inf:
            return await aw
        try:
            return await asyncio.wait_for(aw, timeout_s)
        except asyncio.TimeoutError:
            raise AttemptTimeoutError(what, timeout_s) from None
