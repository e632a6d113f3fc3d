"""What the demo saw: every user request, every model attempt, every circuit state, in time order.

The engine, the traffic workers and the scenario write here from their threads; the live view
and the summary read consistent copies. Times are seconds since the demo
started (:attr:`Recorder.now`), so the records read like the demo's own timeline.

Nothing here talks to modelwatch's telemetry: the demo keeps its own, independent account
of what happened so the summary can be checked against ``/metrics`` and Prometheus instead
of echoing them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "AttemptRecord",
    "Event",
    "Recorder",
    "RequestRecord",
    "RouteRecord",
    "TransitionRecord",
    "percentile",
]

#: Where a model attempt came from: user traffic, or a probe (health checks and breaker
#: recovery probes: what modelwatch labels ``modelwatch.origin="probe"``).
Origin = Literal["user", "probe"]
#: How many events the recorder keeps for the live view (the summary needs far fewer).
MAX_EVENTS: Final = 500


@dataclass(frozen=True)
class AttemptRecord:
    """One call the engine made to a model (one router attempt, or one probe)."""

    start: float
    end: float
    analysis: str
    model: str
    origin: Origin
    #: ``None`` on success, else the error kind (:func:`modelwatch.classify`)
    error: str | None

    @property
    def duration(self) -> float:
        """Seconds the attempt took, as the engine measured it."""
        return self.end - self.start


@dataclass(frozen=True)
class RequestRecord:
    """One request of a user (the traffic generator) to an analysis."""

    start: float
    end: float
    analysis: str
    #: the model whose answer the user got, ``None`` if the request failed
    served_by: str | None
    #: ``None`` on success, else the error kind
    error: str | None
    #: the model the router tried first (the analysis' primary)
    primary: str

    @property
    def duration(self) -> float:
        """Seconds the user waited."""
        return self.end - self.start

    @property
    def ok(self) -> bool:
        """Whether the user got an answer."""
        return self.error is None

    @property
    def failed_over(self) -> bool:
        """Whether a backup, not the primary, answered."""
        return self.served_by is not None and self.served_by != self.primary


@dataclass(frozen=True)
class RouteRecord:
    """One router call as its ``route {router}`` span tells it (modelwatch's own telemetry,
    not the demo's stopwatch): wall-clock epoch seconds, as OpenTelemetry stamps spans."""

    start_wall: float
    end_wall: float
    router: str
    origin: Origin
    #: whether the span ended without an error status
    ok: bool

    @property
    def duration(self) -> float:
        """Seconds the call took, from the span's own timestamps."""
        return self.end_wall - self.start_wall


@dataclass(frozen=True)
class TransitionRecord:
    """A circuit breaker changed state."""

    at: float
    analysis: str
    model: str
    from_state: str
    to_state: str
    reason: str


@dataclass(frozen=True)
class Event:
    """A line for the event log: a phase change, a failover, a breaker transition..."""

    at: float
    kind: str
    text: str


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by the nearest-rank method; ``None`` if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


class Recorder:
    """The demo's thread-safe account of everything that happened."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        #: the epoch time of second 0 (Prometheus' timestamps are wall-clock)
        self.wall_t0 = time.time()
        self._lock = threading.Lock()
        self._attempts: list[AttemptRecord] = []
        self._requests: list[RequestRecord] = []
        self._events: list[Event] = []
        self._transitions: list[TransitionRecord] = []
        self._routes: list[RouteRecord] = []
        self._events_seen = 0
        self._running: dict[int, tuple[str, float]] = {}
        self._ids = 0
        self.internal_errors = 0

    @property
    def start_monotonic(self) -> float:
        """``time.monotonic()`` at second 0."""
        return self._t0

    def now(self) -> float:
        """Seconds since the demo started."""
        return time.monotonic() - self._t0

    def start_clock(self) -> None:
        """Start the demo's clock now (after the slow set-up: imports, servers)."""
        with self._lock:
            self._t0 = time.monotonic()
            self.wall_t0 = time.time()

    # ------------------------------------------------------------------ writers
    def attempt_started(self, model: str) -> int:
        """Note that an attempt of ``model`` is running; returns a token for :meth:`attempt`."""
        with self._lock:
            self._ids += 1
            self._running[self._ids] = (model, self.now())
            return self._ids

    def attempt(self, token: int, record: AttemptRecord) -> None:
        """Record a finished attempt (``token`` from :meth:`attempt_started`)."""
        with self._lock:
            self._running.pop(token, None)
            self._attempts.append(record)

    def request(self, record: RequestRecord) -> None:
        """Record a finished user request."""
        with self._lock:
            self._requests.append(record)

    def transition(self, record: TransitionRecord) -> None:
        """Record a breaker transition."""
        with self._lock:
            self._transitions.append(record)

    def route(self, record: RouteRecord) -> None:
        """Record a router call's span (:mod:`modelwatch.demo.spans`)."""
        with self._lock:
            self._routes.append(record)

    def event(self, kind: str, text: str, at: float | None = None) -> Event:
        """Add a line to the event log and return it."""
        item = Event(self.now() if at is None else at, kind, text)
        with self._lock:
            self._events.append(item)
            self._events_seen += 1
            if len(self._events) > MAX_EVENTS:
                del self._events[: len(self._events) - MAX_EVENTS]
        return item

    # ------------------------------------------------------------------ readers
    def attempts(self, *origins: Origin) -> list[AttemptRecord]:
        """Finished attempts of the given origins (default: user traffic only)."""
        wanted = set(origins or ("user",))
        with self._lock:
            return [a for a in self._attempts if a.origin in wanted]

    def requests(self) -> list[RequestRecord]:
        """Finished user requests."""
        with self._lock:
            return list(self._requests)

    def routes(self) -> list[RouteRecord]:
        """Router calls, as their spans ended."""
        with self._lock:
            return list(self._routes)

    def transitions(self) -> list[TransitionRecord]:
        """Breaker transitions, oldest first."""
        with self._lock:
            return list(self._transitions)

    def events(self, since: int = 0) -> tuple[list[Event], int]:
        """Events after the ``since``-th one ever recorded, and the new count to pass next."""
        with self._lock:
            total = self._events_seen
            kept_from = total - len(self._events)
            start = max(since, kept_from) - kept_from
            return list(self._events[start:]), total

    def recent_events(self, n: int) -> list[Event]:
        """The last ``n`` events."""
        with self._lock:
            return self._events[-n:] if n > 0 else []


def error_counts(records: Iterable[AttemptRecord | RequestRecord]) -> Counter[str]:
    """How many records failed with each error kind."""
    return Counter(r.error for r in records if r.error is not None)
