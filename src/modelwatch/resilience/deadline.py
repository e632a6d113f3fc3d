"""Deadlines and per-attempt timeouts that modelwatch enforces itself.

A coroutine attempt is cancelled at its timeout. A synchronous backend cannot be
interrupted, so each sync attempt runs on a bounded pool of daemon worker threads and the
caller waits at most until the attempt's timeout: a hung backend is *abandoned* (its thread
finishes or hangs on its own; its result is dropped) and never holds the caller past the
deadline. The pool is bounded so a hung backend cannot spawn threads without limit, and
its threads are daemons so a hung call cannot block interpreter exit either.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import queue
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, TypeVar

from modelwatch.errors import ModelwatchError
from modelwatch.resilience._clock import Clock

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

    __slots__ = ("_clock", "at")

    def __init__(self, clock: Clock, timeout_s: float | None) -> None:
        self._clock = clock
        self.at = math.inf if timeout_s is None else clock.monotonic() + timeout_s

    def remaining(self) -> float:
        """Seconds left (``inf`` without a deadline, never negative)."""
        if self.at == math.inf:
            return math.inf
        return max(0.0, self.at - self._clock.monotonic())

    def cap(self, timeout_s: float | None) -> float:
        """The smaller of ``timeout_s`` and the time left."""
        left = self.remaining()
        return left if timeout_s is None else min(left, timeout_s)


class WorkerPool:
    """A bounded pool of daemon threads that run sync attempts the caller may abandon.

    Threads are started on demand up to ``max_workers`` and reused; each task runs in a
    copy of the submitter's context, so the attempt's span is current inside the backend.
    """

    def __init__(self, max_workers: int = 64, name: str = "modelwatch-attempt") -> None:
        self._max = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[
            tuple[Future[Any], contextvars.Context, Callable[..., Any], tuple[Any, ...], Any]
        ] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads = 0

    @property
    def threads(self) -> int:
        """Worker threads started so far."""
        return self._threads

    def submit(
        self, fn: Callable[..., T], args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on a worker, in a copy of the current context."""
        future: Future[T] = Future()
        self._queue.put((future, contextvars.copy_context(), fn, args, kwargs))
        if not self._idle.acquire(blocking=False):
            with self._lock:
                if self._threads < self._max:
                    self._threads += 1
                    threading.Thread(
                        target=self._work, name=f"{self._name}-{self._threads}", daemon=True
                    ).start()
        return future

    def run(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: Any,
        timeout_s: float,
        what: str,
    ) -> T:
        """``fn(*args, **kwargs)`` on a worker; wait at most ``timeout_s``, else abandon it
        and raise :class:`AttemptTimeoutError`."""
        future = self.submit(fn, args, kwargs)
        try:
            return future.result(None if timeout_s == math.inf else timeout_s)
        except FutureTimeoutError:
            future.cancel()  # never starts if it was still queued
            raise AttemptTimeoutError(what, timeout_s) from None

    def _work(self) -> None:
        while True:
            future, ctx, fn, args, kwargs = self._queue.get()
            if future.set_running_or_notify_cancel():
                try:
                    result = ctx.run(fn, *args, **(kwargs or {}))
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                    del result
            del future, ctx, fn, args, kwargs
            self._idle.release()


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
        """Await ``aw``, cancelling it after ``timeout_s`` with :class:`AttemptTimeoutError`."""
        if timeout_s == math.inf:
            return await aw
        cm = asyncio.timeout(timeout_s)
        try:
            async with cm:
                return await aw
        except TimeoutError:
            if cm.expired():
                raise AttemptTimeoutError(what, timeout_s) from None
            raise

else:  # pragma: no cover - Python 3.10

    async def await_within(aw: Awaitable[T], timeout_s: float, what: str) -> T:
        """Await ``aw``, cancelling it after ``timeout_s`` with :class:`AttemptTimeoutError`."""
        if timeout_s == math.inf:
            return await aw
        try:
            return await asyncio.wait_for(aw, timeout_s)
        except asyncio.TimeoutError:
            raise AttemptTimeoutError(what, timeout_s) from None
