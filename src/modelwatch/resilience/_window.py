"""A sliding count window of recent call outcomes, in fixed time buckets.

Recording is O(1); totals sum a handful of buckets and are only needed when a call failed
or was slow, so the closed-state hot path stays cheap.
"""

from __future__ import annotations

__all__ = ["OutcomeWindow"]


class OutcomeWindow:
    """Calls, failures and slow calls seen in the last ``window_s`` seconds.

    The window is split into ``buckets`` slots; a slot older than the window is reset when
    its index comes round again, so memory stays constant whatever the traffic.
    """

    __slots__ = ("_bucket_s", "_calls", "_failures", "_index", "_n", "_slow")

    def __init__(self, window_s: float, buckets: int = 10) -> None:
        self._n = buckets
        self._bucket_s = window_s / buckets
        self._index = [-1] * buckets
        self._calls = [0] * buckets
        self._failures = [0] * buckets
        self._slow = [0] * buckets

    def add(self, now: float, failed: bool, slow: bool) -> None:
        """Count one call that ended at ``now``."""
        idx = int(now // self._bucket_s)
        slot = idx % self._n
        if self._index[slot] != idx:
            self._index[slot] = idx
            self._calls[slot] = 0
            self._failures[slot] = 0
            self._slow[slot] = 0
        self._calls[slot] += 1
        if failed:
            self._failures[slot] += 1
        if slow:
            self._slow[slot] += 1

    def totals(self, now: float) -> tuple[int, int, int]:
        """``(calls, failures, slow)`` over the buckets still inside the window."""
        oldest = int(now // self._bucket_s) - self._n + 1
        calls = failures = slow = 0
        for i in range(self._n):
            if self._index[i] >= oldest:
                calls += self._calls[i]
                failures += self._failures[i]
                slow += self._slow[i]
        return calls, failures, slow

    def reset(self) -> None:
        """Forget everything (the breaker changed generation)."""
        for i in range(self._n):
            self._index[i] = -1
            self._calls[i] = self._failures[i] = self._slow[i] = 0
