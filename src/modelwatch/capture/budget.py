"""Cost budgets: how much of a USD limit the model calls have spent in the current period.

>>> import modelwatch
>>> daily = modelwatch.Budget("daily-llm", limit_usd=50.0, period="day")
>>> daily.used  # share of the limit spent so far this UTC day
0.0
>>> daily.close()

Every priced model call adds its cost to each open budget it matches (all calls, or only those
of one ``model``, ``provider`` or ``analysis``). ``modelwatch.budget.used`` reports
``spent / limit`` per budget, so the generated alert rules can warn before the money runs out;
crossing the limit logs one ``modelwatch.budget.exceeded`` event per period.

A budget can act: with ``enforce="skip"`` a router skips the backends it covers once it is
spent (and fails over, e.g. to a cheaper model); with ``enforce="refuse"`` calls it covers are
refused with :class:`~modelwatch.BudgetExceededError` (:func:`spent_budgets` is the router's
seam). With ``store=redis_store(client, namespace=...)`` the spend is kept in Redis, shared
exactly by every process and surviving their restarts: a call adds to a local pending count
(never a Redis round trip); the write-behind thread sends it with ``INCRBY`` and reads the
total back at most every ``sync_interval_s``; while Redis is away the budget counts locally
and sends what it counted when Redis is back. Without a store, budgets are per process:
aggregate across processes in Prometheus (``sum by (modelwatch_budget)``).
"""

from __future__ import annotations

import atexit
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal

import structlog

from modelwatch import semconv
from modelwatch._safety import report_internal_error
from modelwatch._writebehind import WRITER
from modelwatch.capture._bounded import CARDINALITY_LIMIT
from modelwatch.capture._budget_store import NANOS_PER_USD, BudgetStore, redis_store
from modelwatch.capture._telemetry import Attributes, register_observable
from modelwatch.errors import BudgetExceededError, ConfigurationError

__all__ = [
    "PERIODS",
    "Budget",
    "BudgetStore",
    "charge",
    "flush",
    "redis_store",
    "spent_budgets",
]

logger = structlog.get_logger("modelwatch")

Period = Literal["hour", "day", "week", "month"]
PERIODS: Final = ("hour", "day", "week", "month")
Enforce = Literal["skip", "refuse"]
ENFORCE: Final = (None, "skip", "refuse")
#: After a failed store round trip, leave the store alone this long (seconds).
STORE_BACKOFF_S: Final = 1.0

_open: list[Budget] = []
_lock = threading.Lock()


def _period_start(period: Period | float, now: float) -> float:
    if not isinstance(period, str):
        return now - (now % period)
    moment = datetime.fromtimestamp(now, tz=timezone.utc)
    if period == "hour":
        moment = moment.replace(minute=0, second=0, microsecond=0)
    elif period == "day":
        moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    elif period == "week":  # ISO weeks: Monday 00:00 UTC, as the generated rules assume
        moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        moment -= timedelta(days=moment.weekday())
    else:
        moment = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return moment.timestamp()


def _period_end(period: Period | float, start: float) -> float:
    if not isinstance(period, str):
        return start + period
    moment = datetime.fromtimestamp(start, tz=timezone.utc)
    if period == "month":
        year, month = divmod(moment.month, 12)
        return moment.replace(year=moment.year + year, month=month + 1).timestamp()
    return start + {"hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0}[period]


def _finite_positive(what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"Budget(): {what} must be a number > 0, got {value!r}")
    if not math.isfinite(value) or not value > 0:
        raise ConfigurationError(f"Budget(): {what} must be a finite number > 0, got {value!r}")
    return float(value)


class Budget:
    """A USD limit for model-call cost over a period (``"hour"``, ``"day"``, ``"week"``,
    ``"month"`` in UTC,
    or a number of seconds), optionally restricted to one model, provider or analysis type.

    Creating a budget opens it; :meth:`close` stops it counting and reporting.
    """

    def __init__(
        self,
        name: str,
        *,
        limit_usd: float,
        period: Period | float = "day",
        model: str | None = None,
        provider: str | None = None,
        analysis: str | None = None,
        enforce: Enforce | None = None,
        store: BudgetStore | None = None,
        sync_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"Budget(): name must be a non-empty string, got {name!r}")
        self.limit_usd = _finite_positive("limit_usd", limit_usd)
        if isinstance(period, str):
            if period not in PERIODS:
                raise ConfigurationError(
                    f"Budget(): period must be one of {PERIODS} or seconds, got {period!r}"
                )
        else:
            _finite_positive("period (seconds)", period)
        if enforce not in ENFORCE:
            raise ConfigurationError(f"Budget(): enforce must be one of {ENFORCE}, got {enforce!r}")
        if store is not None and not isinstance(store, BudgetStore):
            raise ConfigurationError(
                f"Budget(): store must be a budget store such as redis_store(client), got {store!r}"
            )
        _finite_positive("sync_interval_s", sync_interval_s)
        if not callable(clock):
            raise ConfigurationError(f"Budget(): clock must be callable, got {clock!r}")
        for what, value in (("model", model), ("provider", provider), ("analysis", analysis)):
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"Budget(): {what} must be a string, got {value!r}")
        self.name = name
        self.period = period
        self.enforce = enforce
        self.store = store
        self.sync_interval_s = float(sync_interval_s)
        self._filters = {
            k: v
            for k, v in (
                (semconv.GEN_AI_REQUEST_MODEL, model),
                (semconv.GEN_AI_PROVIDER_NAME, provider),
                (semconv.MODELWATCH_ANALYSIS, analysis),
            )
            if v is not None
        }
        self._clock = clock
        self._lock = threading.Lock()
        self._start = _period_start(period, clock())
        self._shared = 0  # the store's total for the period, as last read (nano-USD)
        self._pending: dict[float, int] = {}  # period start -> nano-USD not in the store yet
        self._own = 0  # what this process added in the period (nano-USD): the exported share
        self._warned = False
        self._next_sync = 0.0
        self._retry_at = 0.0
        with _lock:
            if any(b.name == name for b in _open):
                raise ConfigurationError(f"Budget(): a budget named {name!r} is already open")
            if len(_open) >= CARDINALITY_LIMIT:
                raise ConfigurationError(
                    f"Budget(): more than {CARDINALITY_LIMIT} open budgets; close some first"
                )
            _open.append(self)
        self._poll()

    def _roll(self) -> None:
        """Start a new period if the clock says so (with the lock held)."""
        start = _period_start(self.period, self._clock())
        if start != self._start:
            self._start, self._shared, self._own, self._warned = start, 0, 0, False

    def _matches(self, attributes: Attributes) -> bool:
        return all(attributes.get(k) == v for k, v in self._filters.items())

    def add(self, usd: float, attributes: Attributes | None = None) -> None:
        """Count ``usd`` against the budget if ``attributes`` match its filters (never I/O)."""
        if attributes is not None and not self._matches(attributes):
            return
        if not isinstance(usd, (int, float)) or not math.isfinite(usd) or usd < 0:
            report_internal_error("budget.add", ValueError(f"not a cost: {usd!r}"))
            return
        nanos = round(usd * NANOS_PER_USD)
        with self._lock:
            self._roll()
            self._pending[self._start] = self._pending.get(self._start, 0) + nanos
            self._own += nanos
            spent = self._shared + self._pending[self._start]
            exceeded = spent >= self.limit_usd * NANOS_PER_USD and not self._warned
            if exceeded:
                self._warned = True
        if self.store is not None:
            WRITER.submit(self, self._service)  # coalesced: one INCRBY per burst
        if exceeded:
            logger.warning(
                "modelwatch.budget.exceeded",
                budget=self.name,
                spent_usd=round(spent / NANOS_PER_USD, 6),
                limit_usd=self.limit_usd,
                enforce=self.enforce,
            )

    @property
    def spent_usd(self) -> float:
        """USD spent in the current period (by every process sharing the store, as last read,
        plus what this process has counted since)."""
        self._poll()
        with self._lock:
            self._roll()
            return (self._shared + self._pending.get(self._start, 0)) / NANOS_PER_USD

    @property
    def used(self) -> float:
        """``spent / limit`` for the current period (may exceed 1.0)."""
        return self.spent_usd / self.limit_usd

    @property
    def own_used(self) -> float:
        """This process's own spend in the period over the limit: what
        ``modelwatch.budget.used`` exports, so that summing it over a service's processes
        (as the generated rules do) gives the service's use, with or without a shared store."""
        with self._lock:
            self._roll()
            return self._own / NANOS_PER_USD / self.limit_usd

    @property
    def exceeded(self) -> bool:
        """Whether the current period's spend has reached the limit."""
        return self.spent_usd >= self.limit_usd

    @property
    def period_end(self) -> float:
        """When the current period ends (epoch seconds, UTC)."""
        with self._lock:
            self._roll()
            return _period_end(self.period, self._start)

    def error(self) -> BudgetExceededError:
        """The :class:`~modelwatch.BudgetExceededError` standing for this spent budget."""
        return BudgetExceededError(self.name, self.spent_usd, self.limit_usd, self.period_end)

    def covers(
        self, *, model: str | None = None, provider: str | None = None, analysis: str | None = None
    ) -> bool:
        """Whether a call of ``model`` / ``provider`` / ``analysis`` counts against this budget."""
        return self._matches(
            {
                semconv.GEN_AI_REQUEST_MODEL: model,
                semconv.GEN_AI_PROVIDER_NAME: provider,
                semconv.MODELWATCH_ANALYSIS: analysis,
            }
        )

    # ------------------------------------------------------------------ shared store
    def _poll(self) -> None:
        """Ask the background thread to re-read the store if the last read is old."""
        if self.store is not None:
            now = time.monotonic()
            if now >= self._next_sync:
                self._next_sync = now + self.sync_interval_s
                WRITER.submit(self, self._service)

    def sync_now(self) -> None:
        """Send what is pending and read the store's total now, on this thread (tests,
        start-up); calls never do this."""
        self._service()

    def _service(self) -> None:
        """Send pending counts (``INCRBY``), then read the total (the background thread)."""
        store = self.store
        if store is None or time.monotonic() < self._retry_at:
            return
        with self._lock:
            self._roll()
            pending = dict(self._pending)
            start = self._start
        try:
            total: int | None = None
            for period_start, nanos in pending.items():
                if nanos:
                    ttl = int(_period_end(self.period, period_start) - period_start) + 86400
                    landed = store.add(self.name, period_start, nanos, ttl)
                else:
                    landed = None
                with self._lock:
                    left = self._pending.get(period_start, 0) - nanos
                    if left:
                        self._pending[period_start] = left
                    else:
                        self._pending.pop(period_start, None)
                if period_start == start:
                    total = landed
            if total is None:
                total = store.total(self.name, start)
        except Exception as exc:
            self._retry_at = time.monotonic() + STORE_BACKOFF_S
            report_internal_error("budget.store", exc)
            return
        with self._lock:
            if self._start == start:
                self._shared = total

    def close(self) -> None:
        """Stop counting and reporting this budget (idempotent)."""
        with _lock:
            if self in _open:
                _open.remove(self)

    def __enter__(self) -> Budget:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Budget({self.name!r}, limit_usd={self.limit_usd}, period={self.period!r})"


def any_enforcing() -> bool:
    """Whether any open budget has ``enforce`` set (the router's cheap check per call)."""
    if not _open:
        return False
    return any(budget.enforce is not None for budget in _open)


def spent_budgets(
    *, model: str | None = None, provider: str | None = None, analysis: str | None = None
) -> tuple[Budget, ...]:
    """The open budgets with ``enforce`` set that cover a call of ``model`` / ``provider`` /
    ``analysis`` and are spent now: the router skips the backend if any says ``"skip"``
    and refuses the call with ``budget.error()`` if any says ``"refuse"``. A local read."""
    found: tuple[Budget, ...] = ()
    for budget in _open:
        if (
            budget.enforce is not None
            and budget.covers(model=model, provider=provider, analysis=analysis)
            and budget.exceeded
        ):
            found += (budget,)
    return found


def charge(usd: float, attributes: Attributes) -> None:
    """Add a call's cost to every open budget it matches (called once per priced call)."""
    budgets = _open
    if not budgets:
        return
    for budget in list(budgets):
        budget.add(usd, attributes)


def _observe() -> Iterable[tuple[float, dict[str, Any]]]:
    for budget in list(_open):
        yield budget.own_used, {semconv.BUDGET: budget.name}


register_observable(semconv.BUDGET_USED, _observe)


def _reset_after_fork() -> None:
    """A forked child counts its own spending: the parent reports what it spent."""
    global _lock
    _lock = threading.Lock()
    for budget in _open:
        budget._lock = threading.Lock()
        budget._shared = 0
        budget._pending = {}
        budget._own = 0
        budget._warned = False
        budget._next_sync = 0.0


os.register_at_fork(after_in_child=_reset_after_fork)


def flush(timeout_s: float = 2.0) -> bool:
    """Send every budget's pending spend to its store now (at exit, and for tests); ``False``
    if it did not all land within ``timeout_s``."""
    for budget in list(_open):
        if budget.store is not None and budget._pending:
            WRITER.submit(budget, budget._service)
    return WRITER.drain(timeout_s) and not any(b._pending for b in _open if b.store is not None)


atexit.register(flush)
