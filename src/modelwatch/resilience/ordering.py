"""Which backend a router tries first: a small Protocol and three strategies.

An ordering gets the router's candidates (each with its :class:`~modelwatch.Backend`, its
breaker state and its recent latency) and returns them in the order to try. It runs on
every call, so it must be cheap; the default returns its input unchanged.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from modelwatch.resilience.router import Backend

__all__ = ["Candidate", "LeastLatency", "Ordering", "Priority", "Weighted"]


@runtime_checkable
class Candidate(Protocol):
    """What an ordering may look at for each backend."""

    @property
    def backend(self) -> Backend:
        """The backend (``.model``, ``.weight``, ...)."""
        ...

    @property
    def latency_s(self) -> float | None:
        """Moving average of its successful calls' duration (``None`` before the first)."""
        ...


C = TypeVar("C", bound=Candidate)


@runtime_checkable
class Ordering(Protocol):
    """Orders candidates for one call."""

    def __call__(self, candidates: Sequence[C]) -> Sequence[C]:
        """The candidates in the order to try them."""
        ...


class Priority:
    """Primary first, then the backups, in the order given (the default)."""

    def __call__(self, candidates: Sequence[C]) -> Sequence[C]:
        """Return ``candidates`` unchanged."""
        return candidates


class Weighted:
    """Spread traffic by ``Backend(weight=...)``: a weighted random order per call.

    With weights 3 and 1, the first backend comes first in about 75 % of calls; the rest
    stay behind it as backups, so failover still works.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()

    def __call__(self, candidates: Sequence[C]) -> Sequence[C]:
        """Order by ``u ** (1 / weight)`` descending (weighted sampling without replacement)."""
        with self._lock:
            keys = [self._rng.random() ** (1.0 / max(c.backend.weight, 1e-9)) for c in candidates]
        return [c for _, c in sorted(zip(keys, candidates, strict=True), key=lambda kc: -kc[0])]


class LeastLatency:
    """Fastest first, by each backend's moving-average latency; unmeasured ones first, so
    every backend gets measured."""

    def __call__(self, candidates: Sequence[C]) -> Sequence[C]:
        """Order by latency, ties (and unmeasured backends) in priority order."""
        return sorted(candidates, key=lambda c: -1.0 if c.latency_s is None else c.latency_s)
