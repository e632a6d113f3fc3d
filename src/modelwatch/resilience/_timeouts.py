"""Timeouts for awaited attempts: one timer per event loop instead of one per await.

``asyncio.timeout()`` schedules a timer handle on the loop for every await it guards and
cancels it afterwards: about 7 µs per guarded await on CPython 3.11 (``benchmarks/
bench_router.py happy`` measures ``asyncio.timeout`` next to this), a fifth of an async
monitored call. The router guards every async attempt, and a stream every chunk, so here
each event loop has one :class:`_Watch`: the deadlines of the awaits in flight in a heap, and
a single timer armed for the earliest. Guarding an await costs a heap push and, at its end,
one flag; the timer only fires when a deadline is due (or to drop the deadlines of awaits
that ended, which it then skips).

When a deadline passes, the await's task is cancelled and the await raises
:class:`~modelwatch.resilience.deadline.AttemptTimeoutError`, with ``asyncio.timeout``'s
semantics: it uses ``Task.cancelling()``/``uncancel()`` to tell its own cancellation from
one by anybody else, which stays a :class:`asyncio.CancelledError` (so an outer timeout or a
caller's cancel wins, as with nested ``asyncio.timeout`` blocks). Python 3.11+ (the 3.10
path of :func:`~modelwatch.resilience.deadline.await_within` uses ``asyncio.wait_for``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import weakref
from typing import Any, Final

__all__ = ["Guard", "watch_for"]

PENDING: Final = 0
DONE: Final = 1
EXPIRED: Final = 2
#: Compact the heap when it holds this many more entries than twice the live ones (awaits
#: that ended leave their entry behind until the timer passes it).
_SLACK: Final = 1024


class Guard:
    """One guarded await: its deadline (loop time), its task, and how it ended."""

    __slots__ = ("cancelling", "expires", "state", "task")

    def __init__(self, expires: float, task: asyncio.Task[Any]) -> None:
        self.expires = expires
        self.task: asyncio.Task[Any] | None = task
        self.cancelling = task.cancelling()  # cancellations requested before it began
        self.state = PENDING


class _Watch:
    """The deadlines of one event loop's guarded awaits (used from the loop's thread only)."""

    __slots__ = ("__weakref__", "_armed", "_handle", "_heap", "_live", "_loop", "_seq")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self._heap: list[tuple[float, int, Guard]] = []
        self._seq = itertools.count()  # ties: deadlines are compared, guards never
        self._armed = math.inf  # when the timer fires
        self._handle: asyncio.TimerHandle | None = None
        self._live = 0

    def add(
        self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], timeout_s: float
    ) -> Guard:
        """Guard an await of ``task`` for ``timeout_s`` seconds from now."""
        guard = Guard(loop.time() + timeout_s, task)
        heap = self._heap
        heapq.heappush(heap, (guard.expires, next(self._seq), guard))
        self._live += 1
        if guard.expires < self._armed:
            self._arm(loop, guard.expires)
        elif len(heap) > 2 * self._live + _SLACK:
            self._heap = [entry for entry in heap if entry[2].state == PENDING]
            heapq.heapify(self._heap)
        return guard

    def done(self, guard: Guard) -> None:
        """The guarded await ended (its deadline is skipped when the timer reaches it)."""
        if guard.state == PENDING:
            guard.state = DONE
            self._live -= 1
        guard.task = None

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed = when
        self._handle = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed = math.inf
        loop = self._loop()
        if loop is None:  # pragma: no cover - a loop that is gone runs no timers
            return
        now = loop.time()
        heap = self._heap
        while heap:
            expires, _, guard = heap[0]
            if guard.state != PENDING:
                heapq.heappop(heap)
            elif expires > now:
                self._arm(loop, expires)
                return
            else:
                heapq.heappop(heap)
                guard.state = EXPIRED
                self._live -= 1
                if guard.task is not None:
                    guard.task.cancel()


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watch] = weakref.WeakKeyDictionary()
#: the last loop asked for and its watch (most processes run one loop: no dictionary lookup)
_last: tuple[weakref.ref[asyncio.AbstractEventLoop], _Watch] | None = None


def watch_for(loop: asyncio.AbstractEventLoop) -> _Watch:
    """The watch of ``loop`` (made on first use; it goes with the loop)."""
    global _last
    last = _last
    if last is not None and last[0]() is loop:
        return last[1]
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = _Watch(loop)
    _last = (weakref.ref(loop), watch)
    return watch
