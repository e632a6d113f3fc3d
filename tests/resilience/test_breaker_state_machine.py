"""A hypothesis state machine drives the breaker guard with an injected clock.

Random interleavings of admissions, outcomes (success, counted failure, ignored failure,
slow success), late reports and time jumps; after every step the guard's promises hold:

* no permit is granted while the breaker is open and its open time has not ended;
* half-open trials in flight never exceed ``half_open_trials``;
* a report made with a permit from an older generation never changes state;
* the breaker only closes after ``close_after`` successful trials of one half-open spell;
* each open time is the backed-off base within the jitter bounds, capped at ``max_open_s``.
"""

from __future__ import annotations

import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from modelwatch import semconv
from modelwatch._clock import ManualClock
from modelwatch.resilience.breaker import Breaker, Permit, Transition
from modelwatch.resilience.policy import BreakerPolicy

POLICY = BreakerPolicy(half_open_trials=2, trial_lease_s=15.0, jitter=0.1)
COUNTED = [
    semconv.ERROR_UNAVAILABLE,
    semconv.ERROR_TIMEOUT,
    semconv.ERROR_AUTH,
    semconv.ERROR_OTHER,
]
IGNORED = [semconv.ERROR_CANCELLED, semconv.ERROR_BAD_REQUEST, semconv.ERROR_RATE_LIMITED]


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.breaker = Breaker("sm", POLICY, clock=self.clock, rng=random.Random(0))
        self.breaker.add_listener(self._on_transition)
        self.permits: list[Permit] = []
        self.open_until: float | None = None
        self.expected_base = POLICY.open_s
        self.trial_successes = 0
        self.transitions: list[Transition] = []

    def _on_transition(self, _b: Breaker, t: Transition) -> None:
        self.transitions.append(t)
        now = self.clock.monotonic()
        if t.to_state == "open":
            assert t.retry_after_s is not None
            if t.reason == "trial_failed":
                self.expected_base = min(self.expected_base * 2, POLICY.max_open_s)
            low, high = self.expected_base * 0.9, self.expected_base * 1.1
            assert low - 1e-9 <= t.retry_after_s <= high + 1e-9, (t, self.expected_base)
            self.open_until = now + t.retry_after_s
        else:
            self.open_until = None
        if t.to_state == "closed":
            assert self.trial_successes >= POLICY.close_after
            self.expected_base = POLICY.open_s
        self.trial_successes = 0

    # --------------------------------------------------------------- rules
    @rule()
    def admit(self) -> None:
        open_until = self.open_until  # the listener resets it if admit() half-opens
        permit = self.breaker.admit()
        now = self.clock.monotonic()
        if permit is not None:
            assert open_until is None or now >= open_until, "admitted while open"
            self.permits.append(permit)

    @rule(seconds=st.sampled_from([0.25, 0.5, 3.0, 9.5, 10.0, 16.0, 31.0, 65.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: self.permits)
    @rule(data=st.data(), slow=st.booleans())
    def succeed(self, data: st.DataObject, slow: bool) -> None:
        permit = self.permits.pop(data.draw(st.integers(0, len(self.permits) - 1)))
        before = (self.breaker.generation, self.breaker._state)
        counted = (
            permit.generation == self.breaker.generation
            and permit.trial
            and permit.id in self.breaker._trials
        )
        if counted:
            self.trial_successes += 1
        self.breaker.record_success(permit, 31.0 if slow else 0.01)
        if permit.generation != before[0]:
            assert (self.breaker.generation, self.breaker._state) == before, "stale report"

    @precondition(lambda self: self.permits)
    @rule(data=st.data(), kind=st.sampled_from(COUNTED + IGNORED))
    def fail(self, data: st.DataObject, kind: str) -> None:
        permit = self.permits.pop(data.draw(st.integers(0, len(self.permits) - 1)))
        before = (self.breaker.generation, self.breaker._state)
        self.breaker.record_failure(permit, kind, 0.01)
        if permit.generation != before[0] or kind in IGNORED:
            assert (self.breaker.generation, self.breaker._state) == before, "must not count"

    @precondition(lambda self: self.permits)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        permit = self.permits.pop(data.draw(st.integers(0, len(self.permits) - 1)))
        before = (self.breaker.generation, self.breaker._state)
        self.breaker.release(permit)
        assert (self.breaker.generation, self.breaker._state) == before

    # --------------------------------------------------------------- invariants
    @invariant()
    def trials_are_bounded(self) -> None:
        assert self.breaker.trials_in_flight <= POLICY.half_open_trials

    @invariant()
    def open_means_rejected(self) -> None:
        if self.open_until is not None and self.clock.monotonic() < self.open_until:
            assert self.breaker.state == "open"
            assert self.breaker.retry_after_s is not None
            assert self.breaker.retry_after_s > 0


BreakerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestBreakerMachine = BreakerMachine.TestCase
