"""Value objects for the breaker and retry policies (docs/router.md), validated when built.

Every default is a starting point from the design, explained in ``docs/router.md``.
Invalid values raise :class:`modelwatch.ConfigurationError` at construction time:
loud at configure time, silent at call time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelwatch import errorkinds
from modelwatch.errors import ConfigurationError

__all__ = ["BreakerPolicy", "RetryPolicy", "StorageFactory"]

#: Builds the pybreaker storage for one named breaker (``name -> CircuitBreakerStorage``).
StorageFactory = Callable[[str], Any]


def _number(owner: str, name: str, value: object) -> float:
    """``value`` as a finite float, or a ConfigurationError naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{owner}.{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigurationError(f"{owner}.{name} must be a finite number, got {value!r}")
    return float(value)


def _positive(owner: str, name: str, value: object, *, zero_ok: bool = False) -> None:
    number = _number(owner, name, value)
    if number < 0 or (number == 0 and not zero_ok):
        raise ConfigurationError(
            f"{owner}.{name} must be {'>= 0' if zero_ok else '> 0'}, got {value!r}"
        )


def _ratio(owner: str, name: str, value: object) -> None:
    if not 0.0 < _number(owner, name, value) <= 1.0:
        raise ConfigurationError(f"{owner}.{name} must be in (0, 1], got {value!r}")


def _kinds(owner: str, name: str, value: object) -> frozenset[str]:
    """A set of known error kinds; a bare string is refused (it would be read letter by
    letter)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (set, frozenset, list, tuple)):
        raise ConfigurationError(
            f"{owner}.{name} must be a set of error kinds such as "
            f"{{{next(iter(errorkinds.KINDS))!r}}}, got {value!r}"
        )
    unknown = sorted(str(k) for k in value if k not in errorkinds.KINDS)
    if unknown:
        raise ConfigurationError(
            f"{owner}.{name} has unknown error kinds {unknown}; known: {list(errorkinds.KINDS)}"
        )
    return frozenset(value)


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
    ignore: frozenset[str] = field(default_factory=errorkinds.breaker_ignored)
    probe_interval_s: float = 5.0
    probe_timeout_s: float = 5.0
    storage: StorageFactory | None = None
    sync_interval_s: float = 0.5

    def __post_init__(self) -> None:
        owner = "BreakerPolicy"
        for name in ("consecutive_failures", "min_calls", "half_open_trials", "close_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
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
        if _number(owner, "backoff_factor", self.backoff_factor) < 1.0:
            raise ConfigurationError(
                f"{owner}.backoff_factor must be >= 1, got {self.backoff_factor!r}"
            )
        if not 0.0 <= _number(owner, "jitter", self.jitter) < 1.0:
            raise ConfigurationError(f"{owner}.jitter must be in [0, 1), got {self.jitter!r}")
        object.__setattr__(self, "ignore", _kinds(owner, "ignore", self.ignore))
        if self.storage is not None and not callable(self.storage):
            raise ConfigurationError(
                f"{owner}.storage must be a storage factory such as "
                f"modelwatch.resilience.redis_storage(client), got {self.storage!r}"
            )


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
    retry_kinds: frozenset[str] = field(default_factory=lambda: frozenset(errorkinds.RETRY_KINDS))

    def __post_init__(self) -> None:
        owner = "RetryPolicy"
        if (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or self.max_retries < 0
        ):
            raise ConfigurationError(
                f"{owner}.max_retries must be an int >= 0, got {self.max_retries!r}"
            )
        _positive(owner, "backoff_s", self.backoff_s, zero_ok=True)
        _positive(owner, "max_wait_s", self.max_wait_s, zero_ok=True)
        _positive(owner, "budget_ratio", self.budget_ratio, zero_ok=True)
        _positive(owner, "budget_min_per_s", self.budget_min_per_s, zero_ok=True)
        if not isinstance(self.failover_on_other, bool):
            raise ConfigurationError(
                f"{owner}.failover_on_other must be True or False, got {self.failover_on_other!r}"
            )
        object.__setattr__(self, "retry_kinds", _kinds(owner, "retry_kinds", self.retry_kinds))
