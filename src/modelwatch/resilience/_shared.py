"""The adapter between the breaker guard and pybreaker's storage (memory or Redis).

pybreaker's storage objects hold the breaker state; this module is the only place that
knows their details. Two things pybreaker's ``CircuitRedisStorage`` does are wrong for a
guard that must never break the host, so they are handled here:

* its constructor talks to Redis and raises if Redis is down: storage is built lazily and
  construction is retried later;
* its getters swallow ``RedisError`` and answer a fallback state, which would look like
  "closed" to a reader: reads go through one ``MGET`` of pybreaker's own keys instead, so an
  unreachable Redis reads as "unknown" and the guard keeps its local state.

:class:`SharedSync` keeps every Redis round trip off the call path: a local transition is
stamped when it happens and handed to the write-behind thread (:mod:`modelwatch._writebehind`),
which also re-reads the shared state at most every ``sync_interval_s`` when a reader asks.
"""

from __future__ import annotations

import calendar
import os
import threading
import weakref
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pybreaker

from modelwatch._clock import TimeSource
from modelwatch._safety import report_internal_error
from modelwatch._writebehind import WRITER, check_timeouts
from modelwatch.resilience.policy import StorageFactory

__all__ = ["Remote", "SharedState", "SharedSync", "redis_storage"]

#: ``(state, opened_at, open_until)``: a breaker state as stored (epoch seconds).
Remote = tuple[str, float | None, float | None]

#: The guard's own key next to pybreaker's: when the open time ends (epoch seconds, float).
OPEN_UNTIL_KEY = "modelwatch_open_until"

#: After a failed read or write, leave the storage alone this long.
UNAVAILABLE_BACKOFF_S = 2.0


def redis_storage(client: Any, namespace: str = "modelwatch") -> StorageFactory:
    """A :attr:`BreakerPolicy.storage` factory sharing breaker state through Redis.

    ``client`` is a ``redis.Redis`` built with ``decode_responses=False`` (pybreaker needs
    bytes). Each breaker ``name`` gets pybreaker's keys under ``"{namespace}:{name}"``.

    >>> policy = BreakerPolicy(storage=redis_storage(redis.Redis(port=6379)))  # doctest: +SKIP
    """

    check_timeouts(client, "redis_storage()")

    def build(name: str) -> Any:
        return pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, client, namespace=f"{namespace}:{name}"
        )

    return build


# the guard's state names <-> pybreaker's
TO_PYBREAKER = {
    "closed": pybreaker.STATE_CLOSED,
    "half_open": pybreaker.STATE_HALF_OPEN,
    "open": pybreaker.STATE_OPEN,
}
FROM_PYBREAKER = {v: k for k, v in TO_PYBREAKER.items()}


class SharedState:
    """Reads and writes one breaker's state in pybreaker storage; never raises."""

    def __init__(self, name: str, factory: StorageFactory, clock: TimeSource) -> None:
        self._name = name
        self._factory = factory
        self._clock = clock
        self._storage: Any = None
        self._retry_at = 0.0
        self.breaker: Any = None  # the pybreaker.CircuitBreaker viewing the same storage

    @property
    def storage(self) -> Any:
        """The pybreaker storage, built on first use (``None`` while it cannot be built)."""
        if self._storage is None and self._clock.monotonic() >= self._retry_at:
            try:
                self._storage = self._factory(self._name)
                self.breaker = pybreaker.CircuitBreaker(
                    name=self._name, state_storage=self._storage
                )
            except Exception as exc:
                self._storage = None
                self._unavailable(exc, "build")
        return self._storage

    def _unavailable(self, exc: BaseException, what: str) -> None:
        self._retry_at = self._clock.monotonic() + UNAVAILABLE_BACKOFF_S
        report_internal_error(f"breaker.storage.{what}", exc)

    def read(self) -> Remote | None:
        """``(state, opened_at, open_until)`` in epoch seconds, or ``None`` if unknown now.

        ``opened_at`` is pybreaker's (whole seconds); ``open_until`` is an extra key the guard
        writes next to pybreaker's so every process honours the same (backed-off) open time.
        """
        if self._clock.monotonic() < self._retry_at:
            return None
        storage = self.storage
        if storage is None:
            return None
        try:
            if isinstance(storage, pybreaker.CircuitRedisStorage):
                # pybreaker's own keys, read in one round trip, errors not swallowed
                raw_state, raw_opened, raw_until = storage._redis.mget(
                    [
                        storage._namespace("state"),
                        storage._namespace("opened_at"),
                        storage._namespace(OPEN_UNTIL_KEY),
                    ]
                )
                if raw_state is None:
                    return None
                state = raw_state.decode() if isinstance(raw_state, bytes) else str(raw_state)
                opened = float(int(raw_opened)) if raw_opened else None
                until = float(raw_until) if raw_until else None
            else:
                state = storage.state
                at = storage.opened_at
                opened = None if at is None else float(calendar.timegm(at.utctimetuple()))
                until = None
        except Exception as exc:
            self._unavailable(exc, "read")
            return None
        mapped = FROM_PYBREAKER.get(state)
        return None if mapped is None else (mapped, opened, until)

    def write(self, state: str, opened_at: float | None, open_until: float | None = None) -> bool:
        """Store ``state`` (and the open times when opening); ``False`` if it did not land."""
        storage = self.storage
        if storage is None:
            return False
        try:
            if isinstance(storage, pybreaker.CircuitRedisStorage):
                pipe = storage._redis.pipeline(transaction=True)
                pipe.set(storage._namespace("state"), TO_PYBREAKER[state])
                if opened_at is not None:
                    pipe.set(storage._namespace("opened_at"), int(opened_at))
                if open_until is not None:
                    pipe.set(storage._namespace(OPEN_UNTIL_KEY), repr(open_until))
                if state == "closed":
                    pipe.set(storage._namespace("fail_counter"), 0)
                    pipe.set(storage._namespace("success_counter"), 0)
                pipe.execute()
            else:
                if opened_at is not None:
                    storage.opened_at = datetime.fromtimestamp(opened_at, timezone.utc)
                storage.state = TO_PYBREAKER[state]
                if state == "closed":
                    storage.reset_counter()
                    storage.reset_success_counter()
        except Exception as exc:
            self._unavailable(exc, "write")
            return False
        return True


class SharedSync:
    """One breaker's link to shared storage, with every round trip on the background thread.

    :meth:`publish` (after a local transition) and :meth:`poll` (on reads) only record and
    queue; :meth:`service`, on the write-behind thread, writes the latest local state if it
    has not landed yet, and otherwise reads the shared state and hands a change to
    ``adopt(remote, generation)``, which applies it only if no local transition happened
    since ``generation`` was read (a stale read never undoes a newer local decision). With
    in-memory storage (no ``factory``) the pybreaker record is written in place.
    """

    def __init__(
        self,
        name: str,
        factory: StorageFactory | None,
        clock: TimeSource,
        interval_s: float,
        *,
        generation: Callable[[], int],
        adopt: Callable[[Remote, int], bool],
    ) -> None:
        self.shared = factory is not None
        self.state = SharedState(name, factory or _memory_storage, clock)
        self._clock = clock
        self._interval_s = interval_s
        self._generation = generation
        self._adopt = adopt
        self._lock = threading.Lock()
        self._servicing = threading.Lock()
        self._pending: Remote | None = None  # the latest local state, until it lands
        self._last: Remote | None = None  # what storage holds, as far as we know
        self._next = 0.0
        _syncs.add(self)

    def _after_fork(self) -> None:
        """The background thread may have held these locks mid round trip at the fork."""
        self._lock = threading.Lock()
        self._servicing = threading.Lock()
        self._next = 0.0

    @property
    def pending(self) -> bool:
        """A local transition has not reached shared storage yet."""
        return self._pending is not None

    def publish(self, state: str, opened_at: float | None, open_until: float | None) -> None:
        """Record a local transition (times stamped by the caller when it happened)."""
        remote = (state, opened_at, open_until)
        if not self.shared:
            self.state.write(*remote)  # pybreaker's in-memory record: no I/O
            return
        with self._lock:
            self._pending = remote
        WRITER.submit(self, self.service)

    def poll(self) -> None:
        """Ask for a refresh of the shared state if the last one is ``interval_s`` old."""
        now = self._clock.monotonic()
        if self.shared and now >= self._next:
            self._next = now + self._interval_s
            WRITER.submit(self, self.service)

    def service(self) -> None:
        """Write what is pending, else read and adopt a change (the background thread, or a
        caller that chose to wait: :meth:`Breaker.sync_now`)."""
        with self._servicing:
            self._service()

    def _service(self) -> None:
        pending = self._pending
        if pending is not None:
            if self.state.write(*pending):
                with self._lock:
                    if self._pending is pending:
                        self._pending = None
                    state, opened, until = pending
                    self._last = (state, None if opened is None else float(int(opened)), until)
            return
        generation = self._generation()
        remote = self.state.read()
        if remote is None or remote == self._last or self._pending is not None:
            return
        if self._adopt(remote, generation):
            self._last = remote


_syncs: weakref.WeakSet[SharedSync] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for sync in list(_syncs):
        sync._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)


def _memory_storage(_name: str) -> Any:
    return pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
