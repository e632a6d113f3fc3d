"""The retry token bucket: retries and hedges may add at most a fixed share of traffic.

Each call deposits ``budget_ratio`` tokens (capped); each same-backend retry, and each hedged
attempt, withdraws one. ``budget_min_per_s`` tokens also accrue per second, so a quiet service
can still retry. During an outage, when every call would like to retry (or hedge), the extra
attempts add at most ``budget_ratio`` of the traffic (plus ``budget_min_per_s``) instead of
multiplying it by ``max_retries``.

(It was called the "retry budget"; "budget" now means cost budgets only, see
:class:`modelwatch.Budget`. The :class:`~modelwatch.RetryPolicy` fields keep their names.)
"""

from __future__ import annotations

import threading

from modelwatch._clock import Clock
from modelwatch.resilience.policy import RetryPolicy

__all__ = ["RetryTokens"]


class RetryTokens:
    """A token bucket for retries and hedges (see module docstring)."""

    __slots__ = ("_cap", "_clock", "_last", "_lock", "_min_per_s", "_ratio", "tokens")

    def __init__(self, policy: RetryPolicy, clock: Clock) -> None:
        self._ratio = policy.budget_ratio
        self._min_per_s = policy.budget_min_per_s
        self._cap = max(10.0, 10.0 * policy.budget_min_per_s)
        self._clock = clock
        self._last = clock.monotonic()
        self._lock = threading.Lock()
        self.tokens = self._cap

    def deposit(self) -> None:
        """One call started (lock-free: a lost update only loses a fraction of a token)."""
        if self.tokens < self._cap:
            self.tokens += self._ratio

    def withdraw(self) -> bool:
        """Take one token if there is one."""
        with self._lock:
            now = self._clock.monotonic()
            self.tokens = min(self._cap, self.tokens + (now - self._last) * self._min_per_s)
            self._last = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False
