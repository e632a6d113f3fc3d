"""Where a budget's spend is kept beyond this process: the store protocol and the Redis store.

Spend is counted in integer nano-USD, so a store's total is exact whatever the number of
processes and increments (``INCRBY`` on an integer; float increments would drift in the last
digits). Each budget period is one key, ``"{namespace}:budget:{name}:{period start}"``,
expiring a day after its period ends. Every method here does I/O and is only ever called by
the write-behind thread (:mod:`modelwatch._writebehind`), never by a user's call.
"""

from __future__ import annotations

from typing import Any, Final, Protocol, runtime_checkable

__all__ = ["NANOS_PER_USD", "BudgetStore", "RedisBudgetStore", "redis_store"]

#: Spend is kept in integer nano-USD.
NANOS_PER_USD: Final = 1_000_000_000


@runtime_checkable
class BudgetStore(Protocol):
    """Shared spend totals per budget period (integer nano-USD); methods may raise."""

    def add(self, budget: str, period_start: float, nanos: int, ttl_s: int) -> int:
        """Add ``nanos`` to the period's total atomically; return the new total."""
        ...

    def total(self, budget: str, period_start: float) -> int:
        """The period's total so far (0 if none)."""
        ...


class RedisBudgetStore:
    """Budget totals in Redis: one integer key per budget and period, ``INCRBY`` + ``EXPIRE``."""

    def __init__(self, client: Any, namespace: str = "modelwatch") -> None:
        if not callable(getattr(client, "pipeline", None)) or not callable(
            getattr(client, "get", None)
        ):
            from modelwatch.errors import ConfigurationError

            raise ConfigurationError(f"redis_store(): client must be a redis.Redis, got {client!r}")
        if not isinstance(namespace, str) or not namespace:
            from modelwatch.errors import ConfigurationError

            raise ConfigurationError(
                f"redis_store(): namespace must be a non-empty string, got {namespace!r}"
            )
        from modelwatch._writebehind import check_timeouts

        check_timeouts(client, "redis_store()")
        self.client = client
        self.namespace = namespace

    def key(self, budget: str, period_start: float) -> str:
        """The Redis key of one budget period."""
        return f"{self.namespace}:budget:{budget}:{int(period_start)}"

    def add(self, budget: str, period_start: float, nanos: int, ttl_s: int) -> int:
        """``INCRBY`` and ``EXPIRE`` in one transaction; the new total."""
        pipe = self.client.pipeline(transaction=True)
        key = self.key(budget, period_start)
        pipe.incrby(key, nanos)
        pipe.expire(key, ttl_s)
        total, _ = pipe.execute()
        return int(total)

    def total(self, budget: str, period_start: float) -> int:
        """``GET`` of the period's key."""
        raw = self.client.get(self.key(budget, period_start))
        return 0 if raw is None else int(raw)

    def __repr__(self) -> str:
        return f"redis_store(namespace={self.namespace!r})"


def redis_store(client: Any, namespace: str = "modelwatch") -> RedisBudgetStore:
    """A :class:`~modelwatch.Budget` ``store`` keeping spend in Redis, shared by every process
    that uses the same ``namespace`` and budget name (and surviving their restarts).

    ``client`` is a ``redis.Redis``; give it socket timeouts (a slow Redis then delays only
    the background thread that talks to it, never a call).

    >>> daily = Budget("daily", limit_usd=50, store=redis_store(redis.Redis()))  # doctest: +SKIP
    """
    return RedisBudgetStore(client, namespace)
