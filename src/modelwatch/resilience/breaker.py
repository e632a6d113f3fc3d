"""The breaker guard: modelwatch's admission logic around pybreaker's state and storage.

pybreaker's own ``CircuitBreaker.call`` holds a lock for the whole call, has no asyncio
support, counts only consecutive failures and lets any late result close the breaker. The
guard here keeps pybreaker for what it is good at (the state record, in memory or in Redis
shared by many processes) and decides admission itself:

* **No lock during the call.** :meth:`Breaker.admit` returns a :class:`Permit` after a
  few microseconds under a lock (none at all while closed); the call runs unlocked; the
  outcome is reported with :meth:`Breaker.record_success` / :meth:`Breaker.record_failure`
  / :meth:`Breaker.release`. Threads and asyncio tasks use the same object.
* **Three opening rules** (:class:`~modelwatch.BreakerPolicy`): consecutive failures,
  failure ratio over a time window, slow-call ratio over the same window.
* **Open time backs off** on each failed trial, with jitter; **half-open trials are
  bounded** and each holds a lease that expires, so a trial that never reports back cannot
  wedge the breaker half-open.
* **Generations.** Every transition starts a new generation; a result reported with a
  permit from an older generation changes nothing, so a slow call admitted before the
  breaker opened can never close it.
* Cancellation, ``bad_request`` (and, by default, ``rate_limited``) never count: the policy's
  ``ignore`` default is :data:`modelwatch.errorkinds.BREAKER_IGNORED`.
* Every transition is a :class:`~modelwatch.resilience.hooks.BreakerTransition` event on the
  hook stream (:mod:`modelwatch.resilience.hooks`), whose default listeners record the
  metric, the span event and the structlog line, plus a call to this breaker's own
  listeners; all of it is guarded and can never raise into the caller.
* Shared state (Redis) is never touched on the caller's thread: see
  :class:`~modelwatch.resilience._shared.SharedSync`.
"""

from __future__ import annotations

import os
import random
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from modelwatch import semconv
from modelwatch._clock import SYSTEM_CLOCK, Clock
from modelwatch._safety import guard, report_internal_error
from modelwatch.capture._telemetry import Attributes, register_observable
from modelwatch.resilience import hooks
from modelwatch.resilience._shared import Remote, SharedSync
from modelwatch.resilience._states import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    REASON_CONSECUTIVE,
    REASON_MANUAL,
    REASON_OPEN_ELAPSED,
    REASON_PROBE,
    REASON_RATIO,
    REASON_RECOVERED,
    REASON_SHARED,
    REASON_SLOW,
    REASON_TRIAL_FAILED,
    Permit,
    State,
)
from modelwatch.resilience._window import OutcomeWindow
from modelwatch.resilience.hooks import BreakerTransition
from modelwatch.resilience.policy import BreakerPolicy

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "Breaker",
    "Permit",
    "State",
    "Transition",
    "TransitionListener",
]


#: One breaker state change, as given to listeners (the hook stream's record).
Transition = BreakerTransition

TransitionListener = Callable[["Breaker", Transition], None]

_breakers: weakref.WeakSet[Breaker] = weakref.WeakSet()


def _observe_states() -> Iterable[tuple[float, Attributes]]:
    for b in list(_breakers):
        yield float(b.exported_state), b.metric_attributes


register_observable(semconv.CIRCUIT_STATE, _observe_states)


def _reset_after_fork() -> None:
    """A forked child gets fresh breaker locks (another thread may have held one)."""
    for b in list(_breakers):
        b._lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


class Breaker:
    """A circuit breaker guard: admits calls, learns from their outcomes, changes state.

    ``router`` and ``model`` only label telemetry. ``clock`` and ``rng`` are injectable so
    tests control time and jitter.

    >>> b = Breaker("vector-store")
    >>> permit = b.admit()
    >>> b.record_success(permit, duration_s=0.01)
    >>> b.state
    'closed'
    """

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy | None = None,
        *,
        router: str | None = None,
        model: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.policy = policy if policy is not None else BreakerPolicy()
        self.router = router
        self.model = model
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._state: str = CLOSED
        self._generation = 0
        self._consecutive = 0
        self._window = OutcomeWindow(self.policy.window_s)
        self._open_until = 0.0
        self._opened_at_wall: float | None = None
        self._open_base_s = self.policy.open_s
        self._trials: dict[int, float] = {}
        self._trial_successes = 0
        self._listeners: list[TransitionListener] = []
        self._probe: Callable[[], object] | None = None
        self.last_error_kind: str | None = None
        self.last_error_at: float | None = None  # wall-clock seconds
        self.latency_ewma_s: float | None = None
        self._sync = SharedSync(
            name,
            self.policy.storage,
            self._clock,
            self.policy.sync_interval_s,
            generation=lambda: self._generation,
            adopt=self._adopt,
        )
        self._shared_reads = self._sync.shared
        self.metric_attributes: dict[str, Any] = {
            semconv.MODELWATCH_CIRCUIT: name,
            semconv.MODELWATCH_ROUTER: router,
            semconv.GEN_AI_REQUEST_MODEL: model,
        }
        _breakers.add(self)

    # ------------------------------------------------------------------ reading
    @property
    def state(self) -> State:
        """``"closed"``, ``"half_open"`` or ``"open"``; an open breaker whose open time has
        passed reads as ``"half_open"`` (it would admit a trial now). With shared storage,
        reading it also keeps the shared state fresh (health checks read it without traffic)."""
        if self._shared_reads:
            self._sync.poll()
        state = self._state
        if state == OPEN and self._clock.monotonic() >= self._open_until:
            return HALF_OPEN
        return state  # type: ignore[return-value]

    @property
    def exported_state(self) -> int:
        """The ``modelwatch.circuit.state`` value: 0 closed; 1 half-open *and recovering* (a
        trial has succeeded); 2 otherwise (open, or half-open with no successful trial yet:
        a hanging backend whose probes never answer stays 2, so its alert fires)."""
        state = self._state
        if state == CLOSED:
            return semconv.CIRCUIT_CLOSED
        if state == HALF_OPEN and self._trial_successes > 0:
            return semconv.CIRCUIT_HALF_OPEN
        return semconv.CIRCUIT_OPEN

    @property
    def generation(self) -> int:
        """Increases on every transition."""
        return self._generation

    @property
    def retry_after_s(self) -> float | None:
        """Seconds until an open breaker admits a trial (``None`` unless open)."""
        if self._state != OPEN:
            return None
        return max(0.0, self._open_until - self._clock.monotonic())

    @property
    def error_rate(self) -> float | None:
        """Share of failed calls in the current window (``None`` without calls)."""
        calls, failures, _ = self._window.totals(self._clock.monotonic())
        return failures / calls if calls else None

    @property
    def trials_in_flight(self) -> int:
        """Half-open trial permits currently held (leases not yet expired)."""
        now = self._clock.monotonic()
        return sum(1 for until in list(self._trials.values()) if until > now)

    @property
    def pybreaker(self) -> Any:
        """The ``pybreaker.CircuitBreaker`` viewing the same storage (for interop)."""
        _ = self._sync.state.storage
        return self._sync.state.breaker

    # ------------------------------------------------------------------ admission
    def admit(self) -> Permit | None:
        """A permit to make one call now, or ``None`` if the breaker refuses it."""
        if self._shared_reads:
            self._sync.poll()
        generation = self._generation  # read before the state: see _set_state
        if self._state == CLOSED:
            return Permit(generation)
        return self._admit_slow(probe=False)

    def _admit_slow(self, *, probe: bool) -> Permit | None:
        now = self._clock.monotonic()
        events: list[Transition] = []
        with self._lock:
            if self._state == OPEN:
                if now < self._open_until and not probe:
                    return None
                self._set_state(HALF_OPEN, REASON_PROBE if probe else REASON_OPEN_ELAPSED, events)
            if self._state == HALF_OPEN:
                for pid, until in list(self._trials.items()):
                    if until <= now:
                        del self._trials[pid]  # lease expired: the slot is free again
                if len(self._trials) >= self.policy.half_open_trials:
                    permit = None
                else:
                    permit = Permit(self._generation, True, now + self.policy.trial_lease_s)
                    self._trials[permit.id] = permit.lease_until
            elif probe:
                permit = None
            else:
                permit = Permit(self._generation)
        self._emit(events)
        return permit

    # ------------------------------------------------------------------ outcomes
    def record_success(self, permit: Permit, duration_s: float) -> None:
        """The permitted call succeeded after ``duration_s`` seconds."""
        if permit.settled:
            return
        permit.settled = True
        now = self._clock.monotonic()
        with self._lock:
            ewma = self.latency_ewma_s
            self.latency_ewma_s = duration_s if ewma is None else ewma + 0.2 * (duration_s - ewma)
            if permit.generation != self._generation:
                self._trials.pop(permit.id, None)
                return
            events: list[Transition] = []
            if self._state == CLOSED:
                self._consecutive = 0
                if duration_s < self.policy.slow_call_s:  # the common case: nothing to check
                    self._window.add(now, False, False)
                    return
                self._window.add(now, False, True)
                self._check_ratios(now, events)
            elif permit.trial and self._trials.pop(permit.id, None) is not None:
                self._trial_successes += 1
                if self._trial_successes >= self.policy.close_after:
                    self._open_base_s = self.policy.open_s
                    self._set_state(CLOSED, REASON_RECOVERED, events)
        self._emit(events)

    def record_failure(self, permit: Permit, kind: str, duration_s: float = 0.0) -> None:
        """The permitted call failed with error kind ``kind`` after ``duration_s`` seconds."""
        if permit.settled:
            return
        if kind != semconv.ERROR_CANCELLED:
            self.last_error_kind = kind
            self.last_error_at = self._clock.time()
        if kind in self.policy.ignore:
            self.release(permit)
            return
        permit.settled = True
        now = self._clock.monotonic()
        events: list[Transition] = []
        with self._lock:
            if permit.generation != self._generation:
                self._trials.pop(permit.id, None)
                return
            if self._state == CLOSED:
                self._consecutive += 1
                self._window.add(now, True, duration_s >= self.policy.slow_call_s)
                if self._consecutive >= self.policy.consecutive_failures:
                    self._open(now, REASON_CONSECUTIVE, events)
                else:
                    self._check_ratios(now, events)
            elif permit.trial and self._trials.pop(permit.id, None) is not None:
                self._open_base_s = min(
                    self._open_base_s * self.policy.backoff_factor, self.policy.max_open_s
                )
                self._open(now, REASON_TRIAL_FAILED, events)
        self._emit(events)

    def release(self, permit: Permit) -> None:
        """Give the permit back without an outcome (cancelled or ignored call)."""
        if permit.settled:
            return
        permit.settled = True
        if permit.trial:
            with self._lock:
                self._trials.pop(permit.id, None)

    # ------------------------------------------------------------------ manual control
    def force_open(self, reason: str = REASON_MANUAL) -> None:
        """Open the breaker now (operators, tests)."""
        events: list[Transition] = []
        with self._lock:
            self._open(self._clock.monotonic(), reason, events)
        self._emit(events)

    def reset(self) -> None:
        """Close the breaker now and forget its history."""
        events: list[Transition] = []
        with self._lock:
            self._open_base_s = self.policy.open_s
            if self._state != CLOSED:
                self._set_state(CLOSED, REASON_MANUAL, events)
            self._consecutive = 0
            self._window.reset()
        self._emit(events)

    def add_listener(self, listener: TransitionListener) -> None:
        """Call ``listener(breaker, transition)`` on every transition (errors are swallowed)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: TransitionListener) -> None:
        """Stop calling ``listener``."""
        self._listeners.remove(listener)

    # ------------------------------------------------------------------ probing
    def set_probe(self, probe: Callable[[], object] | None) -> None:
        """Check recovery in the background while open: ``probe()`` is called every
        ``policy.probe_interval_s`` seconds as a trial (it succeeds unless it raises)."""
        self._probe = probe
        if probe is not None and self._state != CLOSED:
            from modelwatch.resilience._probe import PROBER

            PROBER.schedule(self, 0.0)

    @property
    def probe(self) -> Callable[[], object] | None:
        """The background recovery probe, if any."""
        return self._probe

    def admit_probe(self) -> Permit | None:
        """A trial permit for the recovery probe (taken even before the open time ends)."""
        if self._state == CLOSED:
            return None
        return self._admit_slow(probe=True)

    # ------------------------------------------------------------------ internals
    def _check_ratios(self, now: float, events: list[Transition]) -> None:
        calls, failures, slow = self._window.totals(now)
        if calls < self.policy.min_calls:
            return
        if failures / calls >= self.policy.failure_ratio:
            self._open(now, REASON_RATIO, events)
        elif slow / calls >= self.policy.slow_call_ratio:
            self._open(now, REASON_SLOW, events)

    def _open(self, now: float, reason: str, events: list[Transition]) -> None:
        jitter = self.policy.jitter
        factor = 1.0 + self._rng.uniform(-jitter, jitter) if jitter else 1.0
        # jitter spreads reopenings of many processes; the cap holds after it
        self._open_until = now + min(self._open_base_s * factor, self.policy.max_open_s)
        self._opened_at_wall = self._clock.time()
        self._set_state(OPEN, reason, events)

    def _set_state(self, new: str, reason: str, events: list[Transition]) -> None:
        """Change state under the lock. The state is written before the generation so the
        lock-free closed path in :meth:`admit` can never pair a new generation with a stale
        state."""
        old = self._state
        self._state = new
        self._generation += 1
        self._trials.clear()
        self._trial_successes = 0
        self._consecutive = 0
        if new != HALF_OPEN:
            self._window.reset()
        retry_after = max(0.0, self._open_until - self._clock.monotonic()) if new == OPEN else None
        now_wall = self._clock.time()
        events.append(
            Transition(
                self.name,
                old,
                new,
                reason,
                self._generation,
                retry_after,
                self.router,
                self.model,
                self.last_error_kind,
                now_wall,
            )
        )
        if reason != REASON_SHARED:  # stamped now, written by the background thread
            opened = self._opened_at_wall if new == OPEN else None
            until = None if retry_after is None else now_wall + retry_after
            self._sync.publish(new, opened, until)

    def _emit(self, events: list[Transition]) -> None:
        for event in events:
            hooks.emit(event)
            for listener in list(self._listeners):
                try:
                    listener(self, event)
                except Exception as exc:
                    report_internal_error("breaker.listener", exc)
            if event.to_state == OPEN and self._probe is not None:
                with guard("breaker.probe.schedule"):
                    from modelwatch.resilience._probe import PROBER

                    PROBER.schedule(self, self.policy.probe_interval_s)

    # ------------------------------------------------------------------ shared state
    def sync_now(self) -> None:
        """Write pending local state, or read the shared state, now on this thread (tests,
        start-up); calls never do this."""
        self._sync.service()

    def _adopt(self, remote: Remote, generation: int) -> bool:
        """Adopt a state another process stored (the background thread); ``False`` if a
        local transition happened since ``generation`` was read."""
        events: list[Transition] = []
        with self._lock:
            if generation != self._generation or self._sync.pending:
                return False
            state, opened_at, open_until = remote
            if state == OPEN:
                wall = self._clock.time()
                if open_until is None:  # written by plain pybreaker: whole seconds
                    open_until = (opened_at or wall) + self._open_base_s
                until = self._clock.monotonic() + max(0.0, open_until - wall)
                if self._state != OPEN:
                    self._open_until = until
                    self._opened_at_wall = opened_at
                    self._set_state(OPEN, REASON_SHARED, events)
                elif until > self._open_until:
                    # Open here too, but another process re-opened it since (its trial
                    # failed): take the later end, or this process would trial it early.
                    self._open_until = until
                    self._opened_at_wall = opened_at
            elif state == CLOSED and self._state != CLOSED:
                self._open_base_s = self.policy.open_s
                self._set_state(CLOSED, REASON_SHARED, events)
        self._emit(events)
        return True

    def __repr__(self) -> str:
        return f"<Breaker {self.name!r} {self.state} gen={self._generation}>"
