"""Time, injectable: the breaker guard, the router and the health registry read the clock
through these, so tests move time forward explicitly instead of sleeping.

Tests pass a :class:`ManualClock` and move time forward explicitly, so nothing sleeps to
let time pass. The shared (Redis) breaker state needs wall-clock time, local decisions use
monotonic time; a manual clock advances both together.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock", "SYSTEM_CLOCK", "TimeSource"]


@runtime_checkable
class TimeSource(Protocol):
    """Reading the time: all the health registry needs."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going backwards."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (for timestamps and state shared across hosts)."""
        ...


@runtime_checkable
class Clock(TimeSource, Protocol):
    """Reading the time and waiting: what the breaker guard and the router need."""

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`time.time`, real sleeps.

    ``monotonic`` and ``time`` *are* the :mod:`time` functions (no Python frame in between):
    the router reads the clock several times per call.
    """

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    def sleep(self, seconds: float) -> None:
        """Sleep with :func:`time.sleep`."""
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        """Sleep with :func:`asyncio.sleep`."""
        await asyncio.sleep(max(seconds, 0.0))


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that only moves when told to; sleeping advances it instantly.

    >>> clock = ManualClock()
    >>> clock.advance(10.0)
    >>> clock.monotonic()
    10.0
    """

    def __init__(self, start: float = 0.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._lock = threading.Lock()
        #: every sleep asked of this clock, in order (tests assert on it)
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """The current manual time."""
        return self._now

    def time(self) -> float:
        """Wall time, moving in step with :meth:`monotonic`."""
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        with self._lock:
            self._now += max(seconds, 0.0)

    def sleep(self, seconds: float) -> None:
        """Record the sleep and advance time instead of blocking."""
        self.sleeps.append(seconds)
        self.advance(seconds)

    async def asleep(self, seconds: float) -> None:
        """Record the sleep, advance time, and yield to the event loop once."""
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)
