"""Value objects for the breaker and retry policies (DESIGN.md §5), validated when built.

Every default is a starting point from the design, explained in ``docs/router.md``.
Invalid values raise :class:`modelwatch.ConfigurationError` at construction time:
loud at configure time, silent at call time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelwatch import semconv
from modelwatch.errors import ConfigurationError

__all__ = ["BreakerPolicy", "RetryPolicy", "StorageFactory"]

#: Builds the pybreaker storage for one named breaker (``name -> CircuitBreakerStorage``).
StorageFactory = Callable[[str], Any]


def _positive(owner: str, name: str, value: float, *, zero_ok: bool = False) -> None:
    if value < 0 or (value == 0 and not zero_ok):
        raise ConfigurationError(
            f"{owner}.{name} must be {'>= 0' if zero_ok else '> 0'}, got {value!r}"
        )


def _ratio(owner: str, name: str, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise ConfigurationError(f"{owner}.{name} must be in (0, 1], got {value!r}")


@dataclass(frozen=True)
class BreakerPolicy:
    """When a circuit breaker opens, how long it stays open, and how it closes again.

    The breaker opens on ``consecutive_failures`` failures in a row, or when at least
    ``min_calls`` calls in the last ``window_s`` seconds show a failure share of at least
    ``failure_ratio``, or a share of at least ``slow_call_ratio`` slower than ``slow_call_s``.
    It stays open ``open_s`` seconds (times ``backoff_factor`` for each failed trial, at most
    ``max_open_s``, randomised by +/- ``jitter``), then admits at most ``half_open_trials``
    trial calls at a time, each holding a lease of ``trial_lease_s`` seconds; it closes after
    ``close_after`` successful trials. Errors whose kind is in ``ignore`` never count.

    ``storage`` builds pybreaker storage per breaker name (see
    :func:`modelwatch.resilience.redis_storage`) to share state across processes; the
    shared state is read at most every ``sync_interval_s``. ``probe_interval_s`` is how often
    a background probe checks an open backend that has a probe.

    >>> BreakerPolicy(consecutive_failures=5, open_s=30.0).max_open_s
    60.0
    """

    consecutive_failures: int = 3
    failure_ratio: float = 0.5
    min_calls: int = 10
    window_s: float = 30.0
    slow_call_s: float = 30.0
    slow_call_ratio: float = 0.8
    open_s: float = 10.0
    max_open_s: float = 60.0
    backoff_factor: float = 2.0
    jitter: float = 0.1
    half_open_trials: int = 1
    trial_lease_s: float = 30.0
    close_after: int = 2
    ignore: frozenset[str] = field(
        default_factory=lambda: frozenset(
            {semconv.ERROR_BAD_REQUEST, semconv.ERROR_CANCELLED, semconv.ERROR_RATE_LIMITED}
        )
    )
    probe_interval_s: float = 5.0
    probe_timeout_s: float = 5.0
    storage: StorageFactory | None = None
    sync_interval_s: float = 0.5

    def __post_init__(self) -> None:
        owner = "BreakerPolicy"
        for name in ("consecutive_failures", "min_calls", "half_open_trials", "close_after"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{owner}.{name} must be an int >= 1, got {value!r}")
        _ratio(owner, "failure_ratio", self.failure_ratio)
        _ratio(owner, "slow_call_ratio", self.slow_call_ratio)
        for name in (
            "window_s",
            "slow_call_s",
            "open_s",
            "max_open_s",
            "trial_lease_s",
            "probe_interval_s",
            "probe_timeout_s",
            "sync_interval_s",
        ):
            _positive(owner, name, getattr(self, name))
        if self.max_open_s < self.open_s:
            raise ConfigurationError(
                f"{owner}.max_open_s ({self.max_open_s}) must be >= open_s ({self.open_s})"
            )
        if self.backoff_factor < 1.0:
            raise ConfigurationError(
                f"{owner}.backoff_factor must be >= 1, got {self.backoff_factor!r}"
            )
        if not 0.0 <= self.jitter < 1.0:
            raise ConfigurationError(f"{owner}.jitter must be in [0, 1), got {self.jitter!r}")
        unknown = set(self.ignore) - set(semconv.ERROR_KINDS)
        if unknown:
            raise ConfigurationError(
                f"{owner}.ignore has unknown error kinds {sorted(unknown)}; "
                f"known: {list(semconv.ERROR_KINDS)}"
            )
        object.__setattr__(self, "ignore", frozenset(self.ignore))


@dataclass(frozen=True)
class RetryPolicy:
    """How a router retries: fail over first, retry the same backend only as a last resort.

    A failed attempt moves to the next backend at once, without sleeping. Only when no other
    backend can take the call is the same backend retried, at most ``max_retries`` times per
    call, after its ``Retry-After`` (or ``backoff_s`` doubling, when the error gave none),
    capped at ``max_wait_s`` and only if the wait fits in the call's deadline.
    Retries draw on a budget: each call adds ``budget_ratio`` tokens and at most
    ``budget_min_per_s`` tokens per second accrue on their own, so an outage cannot multiply
    traffic. ``failover_on_other`` decides whether an unclassified error (``_OTHER``) fails
    over (default: it surfaces, like a bug in the caller's code would).

    >>> RetryPolicy(max_retries=0).max_wait_s
    60.0
    """

    max_retries: int = 2
    backoff_s: float = 0.5
    max_wait_s: float = 60.0
    budget_ratio: float = 0.2
    budget_min_per_s: float = 1.0
    failover_on_other: bool = False
    retry_kinds: frozenset[str] = field(
        default_factory=lambda: frozenset(
            {semconv.ERROR_RATE_LIMITED, semconv.ERROR_UNAVAILABLE, semconv.ERROR_TIMEOUT}
        )
    )

    def __post_init__(self) -> None:
        owner = "RetryPolicy"
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigurationError(
                f"{owner}.max_retries must be an int >= 0, got {self.max_retries!r}"
            )
        _positive(owner, "backoff_s", self.backoff_s, zero_ok=True)
        _positive(owner, "max_wait_s", self.max_wait_s, zero_ok=True)
        _positive(owner, "budget_ratio", self.budget_ratio, zero_ok=True)
        _positive(owner, "budget_min_per_s", self.budget_min_per_s, zero_ok=True)
        unknown = set(self.retry_kinds) - set(semconv.ERROR_KINDS)
        if unknown:
            raise ConfigurationError(
                f"{owner}.retry_kinds has unknown error kinds {sorted(unknown)}"
            )
        object.__setattr__(self, "retry_kinds", frozenset(self.retry_kinds))
