"""Bounded registries keyed by attribute values: past a limit, new keys share one overflow set.

Anything modelwatch keeps per distinct attribute value (a model name, an analysis, a breaker
or budget name) is bounded the way the OpenTelemetry SDK bounds its own metric streams: the
first :data:`CARDINALITY_LIMIT` distinct keys are kept as they are, every further key is
folded into one *overflow* key, whose metric attributes are ``otel.metric.overflow=true``,
and one warning is logged per registry. Counts are never dropped: what a folded key adds
lands on the overflow key.

Three shapes, all thread-safe and fork-safe (:meth:`reset_after_fork`):

- :class:`BoundedKeys` — a set of keys; :meth:`~BoundedKeys.admit` says whether a key is
  kept, :meth:`~BoundedKeys.fold` returns the key itself or the overflow key.
- :class:`BoundedTotals` — running sums per key (:meth:`~BoundedTotals.add`).
- :class:`BoundedRegistry` — one object per key, built on first use by a factory
  (:meth:`~BoundedRegistry.get`); folded keys share the overflow key's object.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable
from typing import Any, Final, Generic, TypeVar

import structlog

from modelwatch import semconv

#: Distinct keys a registry keeps before folding new ones into the overflow key: the
#: OpenTelemetry SDK's own default limit of attribute sets per instrument.
CARDINALITY_LIMIT: Final = 2000
OVERFLOW_ATTRIBUTE: Final = semconv.OTEL_METRIC_OVERFLOW
#: The metric attributes of the overflow set.
OVERFLOW_ATTRIBUTES: Final[dict[str, Any]] = {OVERFLOW_ATTRIBUTE: True}
#: The overflow key of registries keyed by ``((attribute, value), ...)`` tuples.
OVERFLOW_KEY: Final = ((OVERFLOW_ATTRIBUTE, True),)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

logger = structlog.get_logger("modelwatch")


class _Bounded(Generic[K]):
    __slots__ = ("_lock", "_warned", "limit", "name", "overflow")

    def __init__(self, name: str, limit: int = CARDINALITY_LIMIT, *, overflow: K) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"{name}: the cardinality limit must be an int >= 1, got {limit!r}")
        self.name = name
        self.overflow = overflow
        self.limit = limit
        self._lock = threading.Lock()
        self._warned = False

    def _fold(self, key: object) -> K:
        """Called with the lock held when ``key`` does not fit: warn once, return overflow."""
        if not self._warned:
            self._warned = True
            with contextlib.suppress(Exception):  # a broken logger must not break the host
                logger.warning(
                    "modelwatch.cardinality.overflow",
                    registry=self.name,
                    limit=self.limit,
                    message=(
                        f"more than {self.limit} distinct {self.name} keys: further ones are "
                        f"recorded under {OVERFLOW_ATTRIBUTE}=true"
                    ),
                )
        return self.overflow

    def reset_after_fork(self) -> None:
        """A fresh lock in a forked child (the parent's may have been held at fork)."""
        self._lock = threading.Lock()


class BoundedKeys(_Bounded[Hashable]):
    """At most ``limit`` distinct keys (plus the overflow key).

    :meth:`admit` says whether a key is kept; :meth:`fold` returns the key to record under
    (the key itself, or the overflow key, then remembered too).
    """

    __slots__ = ("_keys",)

    def __init__(
        self,
        name: str,
        limit: int = CARDINALITY_LIMIT,
        *,
        overflow: K = OVERFLOW_KEY,  # type: ignore[assignment]
    ) -> None:
        super().__init__(name, limit, overflow=overflow)
        self._keys: dict[Any, None] = {}

    def admit(self, key: Hashable) -> bool:
        """``True`` if ``key`` is (or now becomes) one of the kept keys, ``False`` if it
        overflows (warned about once)."""
        if key in self._keys:
            return True
        with self._lock:
            if key in self._keys:
                return True
            if len(self._keys) < self.limit or key == self.overflow:
                self._keys[key] = None
                return True
            self._fold(key)
            return False

    def fold(self, key: Hashable) -> Any:
        """``key`` if it is kept, else the overflow key (which is then kept too)."""
        if self.admit(key):
            return key
        with self._lock:
            self._keys[self.overflow] = None
        return self.overflow

    def snapshot(self) -> list[Any]:
        """The kept keys, in admission order."""
        return list(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def clear(self) -> None:
        """Forget every key."""
        with self._lock:
            self._keys.clear()


class BoundedTotals(_Bounded[K]):
    """Running float sums per key; past the limit, what new keys add goes to the overflow."""

    __slots__ = ("_totals",)

    def __init__(self, name: str, limit: int = CARDINALITY_LIMIT, *, overflow: K) -> None:
        super().__init__(name, limit, overflow=overflow)
        self._totals: dict[K, float] = {}

    def add(self, key: K, amount: float) -> None:
        """Add ``amount`` to the total of ``key`` (or of the overflow key)."""
        totals = self._totals
        with self._lock:
            if key in totals:
                totals[key] += amount
            elif len(totals) < self.limit or key == self.overflow:
                totals[key] = amount
            else:
                folded = self._fold(key)
                totals[folded] = totals.get(folded, 0.0) + amount

    def items(self) -> list[tuple[K, float]]:
        """A snapshot of ``(key, total)`` pairs."""
        with self._lock:
            return list(self._totals.items())

    def __len__(self) -> int:
        return len(self._totals)

    def __bool__(self) -> bool:
        return bool(self._totals)

    def clear(self) -> None:
        """Forget every total."""
        with self._lock:
            self._totals.clear()


class BoundedRegistry(_Bounded[K], Generic[K, V]):
    """One object per key, built by ``factory(key)`` on first use; keys past the limit share
    the object of the overflow key (built by ``factory(overflow)``)."""

    __slots__ = ("_objects",)

    def __init__(self, name: str, limit: int = CARDINALITY_LIMIT, *, overflow: K) -> None:
        super().__init__(name, limit, overflow=overflow)
        self._objects: dict[K, V] = {}

    def get(self, key: K, factory: Callable[[K], V]) -> V:
        """The object of ``key`` (or of the overflow key when ``key`` does not fit)."""
        found = self._objects.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._objects.get(key)
            if found is not None:
                return found
            if len(self._objects) >= self.limit and key != self.overflow:
                key = self._fold(key)
                found = self._objects.get(key)
                if found is not None:
                    return found
            made = factory(key)
            self._objects[key] = made
            return made

    def items(self) -> list[tuple[K, V]]:
        """A snapshot of ``(key, object)`` pairs."""
        return list(self._objects.items())

    def __len__(self) -> int:
        return len(self._objects)

    def clear(self) -> None:
        """Forget every object."""
        with self._lock:
            self._objects.clear()
