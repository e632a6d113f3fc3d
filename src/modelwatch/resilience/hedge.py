"""Hedged requests: when an attempt is slow to answer, ask the next backend at the same time.

``Router(hedge=Hedge())`` (off by default). When an attempt has not answered after the hedge
delay, the next backend that can take the call is started alongside it; the first success
wins, and the other attempt is cancelled (``async``) or abandoned on its backend's worker pool
(sync: its thread finishes on its own and its result is dropped). Each hedge takes a token from
the router's retry token bucket, so hedges add at most ``RetryPolicy.budget_ratio`` of the
traffic (plus ``budget_min_per_s``), never a multiple of it.

The delay is ``after_s`` if given, else the backend's recent p95 latency (learned from its last
``window`` successful attempts, recomputed every ``window // 8`` answers), kept within
``[min_after_s, max_after_s]``; until a backend has ``min_samples`` answers, ``max_after_s`` is
used. This is the proxy-side hedging of Envoy (``hedge_on_per_try_timeout``) and gRPC
(``hedgingPolicy``, ``hedgingDelay``, throttled by retry tokens), done in-process.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from modelwatch.errors import ConfigurationError

__all__ = ["Hedge", "LatencyWindow"]


def _number(owner: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"{owner} {name} must be a finite number, got {value!r}")
    if value <= 0:
        raise ConfigurationError(f"{owner} {name} must be > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Hedge:
    """When to start a hedged attempt, and how many (see the module docstring).

    >>> Hedge(after_s=0.5).max_hedges
    1
    """

    after_s: float | None = None
    max_hedges: int = 1
    min_after_s: float = 0.05
    max_after_s: float = 10.0
    window: int = 200
    min_samples: int = 20

    def __post_init__(self) -> None:
        if self.after_s is not None:
            _number("Hedge", "after_s", self.after_s)
        _number("Hedge", "min_after_s", self.min_after_s)
        _number("Hedge", "max_after_s", self.max_after_s)
        if self.max_after_s < self.min_after_s:
            raise ConfigurationError(
                f"Hedge max_after_s ({self.max_after_s!r}) must be >= "
                f"min_after_s ({self.min_after_s!r})"
            )
        for name in ("max_hedges", "window", "min_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"Hedge {name} must be an int >= 1, got {value!r}")
        if self.min_samples > self.window:
            raise ConfigurationError(
                f"Hedge min_samples ({self.min_samples}) must be <= window ({self.window})"
            )

    def delay_s(self, window: LatencyWindow | None) -> float:
        """The hedge delay for a backend whose recent latencies are ``window``."""
        if self.after_s is not None:
            return self.after_s
        p95 = None if window is None else window.p95(self.min_samples)
        if p95 is None:
            return self.max_after_s
        return min(self.max_after_s, max(self.min_after_s, p95))


class LatencyWindow:
    """The last ``size`` successful attempt durations of one backend, and their p95.

    ``add`` is an append to a ring (no sort on the call path); the p95 is recomputed once per
    ``size // 8`` additions, so it lags the traffic by a few answers.
    """

    __slots__ = ("_every", "_lock", "_next", "_p95", "_ring", "_since", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._ring: list[float] = []
        self._next = 0
        self._since = 0
        self._every = max(1, size // 8)
        self._p95: float | None = None
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        """Record one successful attempt's duration."""
        with self._lock:
            if len(self._ring) < self._size:
                self._ring.append(seconds)
            else:
                self._ring[self._next] = seconds
                self._next = (self._next + 1) % self._size
            self._since += 1
            if self._since >= self._every or self._p95 is None:
                self._since = 0
                ordered = sorted(self._ring)
                self._p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    def p95(self, min_samples: int = 1) -> float | None:
        """The p95 of the window, or ``None`` with fewer than ``min_samples`` answers."""
        if len(self._ring) < min_samples:
            return None
        return self._p95
