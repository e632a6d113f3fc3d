"""Background recovery probes: an open breaker learns its backend healed without user traffic.

One daemon thread serves every breaker that has a probe. While a breaker is open it calls
the probe every ``probe_interval_s`` seconds as a half-open trial (taken even before the
open time ends, since a probe is cheap and controlled); after a successful probe it probes
again at once, so with the default ``close_after=2`` a healed backend is closed within one
probe interval plus two probe round trips. Each probe runs on the worker pool with
``probe_timeout_s``, so a hanging probe cannot stall the others.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import weakref
from typing import TYPE_CHECKING

from modelwatch import semconv
from modelwatch._safety import report_internal_error
from modelwatch.capture.origin import probing
from modelwatch.resilience import hooks
from modelwatch.resilience._kinds import default_classify
from modelwatch.resilience.deadline import shared_pool

if TYPE_CHECKING:
    from modelwatch.resilience.breaker import Breaker

__all__ = ["PROBER", "Prober", "run_probe"]


def run_probe(breaker: Breaker) -> bool | None:
    """Run ``breaker``'s probe once as a trial, now, on the calling thread's behalf.

    Returns ``True``/``False`` for a probe that succeeded/failed, ``None`` if no probe ran
    (no probe set, breaker closed, or a trial already in flight).
    """
    probe = breaker.probe
    if probe is None:
        return None
    permit = breaker.admit_probe()
    if permit is None:
        return None
    timeout = breaker.policy.probe_timeout_s
    start = time.perf_counter()
    try:
        with probing():  # the pool runs it in a copy of this context: a probe's calls
            shared_pool().run(probe, (), None, timeout, f"probe of {breaker.name!r}")
    except BaseException as exc:
        kind = default_classify(exc)
        if kind == semconv.ERROR_OTHER:
            kind = semconv.ERROR_UNAVAILABLE  # a probe that raises means "not healthy"
        duration = time.perf_counter() - start
        breaker.record_failure(permit, kind, duration)
        _result(breaker, False, kind, duration)
        if not isinstance(exc, Exception):
            raise
        return False
    duration = time.perf_counter() - start
    breaker.record_success(permit, duration)
    _result(breaker, True, None, duration)
    return True


def _result(breaker: Breaker, ok: bool, kind: str | None, duration_s: float) -> None:
    hooks.emit(hooks.ProbeResult(breaker.name, ok, kind, duration_s, breaker.router, breaker.model))


class Prober:
    """The scheduler thread: a heap of (due time, breaker), started on first use."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, weakref.ref[Breaker]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._scheduled: weakref.WeakSet[Breaker] = weakref.WeakSet()

    def schedule(self, breaker: Breaker, delay_s: float) -> None:
        """Probe ``breaker`` after ``delay_s`` real seconds (unless already scheduled)."""
        with self._cond:
            if breaker in self._scheduled:
                return
            self._scheduled.add(breaker)
            heapq.heappush(
                self._heap, (time.monotonic() + delay_s, next(self._seq), weakref.ref(breaker))
            )
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="modelwatch-prober", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                _, _, ref = heapq.heappop(self._heap)
                breaker = ref()
                if breaker is None:
                    continue
                self._scheduled.discard(breaker)
            try:
                ran = run_probe(breaker)
                state = breaker.state
                if state != "closed" and breaker.probe is not None:
                    # straight on after a success (close_after needs more); else the interval
                    again = 0.0 if ran and state == "half_open" else breaker.policy.probe_interval_s
                    self.schedule(breaker, again)
            except Exception as exc:
                report_internal_error("prober", exc)
            del breaker


PROBER = Prober()
