"""Cost budgets: how much of a USD limit the model calls have spent in the current period.

>>> import modelwatch
>>> daily = modelwatch.Budget("daily-llm", limit_usd=50.0, period="day")
>>> daily.used  # share of the limit spent so far this UTC day
0.0
>>> daily.close()

Every priced model call adds its cost to each open budget it matches (all calls, or only those
of one ``model``, ``provider`` or ``analysis``). ``modelwatch.budget.used`` reports
``spent / limit`` per budget, so the generated alert rules can warn before the money runs out;
crossing the limit logs one ``modelwatch.budget.exceeded`` event per period. Budgets are
per process: aggregate across processes in Prometheus (``sum by (modelwatch_budget)``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal

import structlog

from modelwatch import semconv
from modelwatch.capture._telemetry import Attributes, register_observable

logger = structlog.get_logger("modelwatch")

Period = Literal["hour", "day", "week", "month"]
PERIODS: Final = ("hour", "day", "week", "month")

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
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"Budget(): name must be a non-empty string, got {name!r}")
        if (
            isinstance(limit_usd, bool)
            or not isinstance(limit_usd, (int, float))
            or not limit_usd > 0
        ):
            raise ValueError(f"Budget(): limit_usd must be a number > 0, got {limit_usd!r}")
        if isinstance(period, str):
            if period not in PERIODS:
                raise ValueError(
                    f"Budget(): period must be one of {PERIODS} or seconds, got {period!r}"
                )
        elif isinstance(period, bool) or not isinstance(period, (int, float)) or period <= 0:
            raise ValueError(
                f"Budget(): period must be one of {PERIODS} or seconds > 0, got {period!r}"
            )
        self.name = name
        self.limit_usd = float(limit_usd)
        self.period = period
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
        self._spent = 0.0
        self._warned = False
        with _lock:
            if any(b.name == name for b in _open):
                raise ValueError(f"Budget(): a budget named {name!r} is already open")
            _open.append(self)

    def _roll(self) -> None:
        start = _period_start(self.period, self._clock())
        if start != self._start:
            self._start, self._spent, self._warned = start, 0.0, False

    def add(self, usd: float, attributes: Attributes | None = None) -> None:
        """Count ``usd`` against the budget if ``attributes`` match its filters."""
        if attributes is not None and any(attributes.get(k) != v for k, v in self._filters.items()):
            return
        with self._lock:
            self._roll()
            self._spent += usd
            exceeded = self._spent >= self.limit_usd and not self._warned
            if exceeded:
                self._warned = True
        if exceeded:
            logger.warning(
                "modelwatch.budget.exceeded",
                budget=self.name,
                spent_usd=round(self._spent, 6),
                limit_usd=self.limit_usd,
            )

    @property
    def spent_usd(self) -> float:
        """USD spent in the current period."""
        with self._lock:
            self._roll()
            return self._spent

    @property
    def used(self) -> float:
        """``spent / limit`` for the current period (may exceed 1.0)."""
        return self.spent_usd / self.limit_usd

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


def charge(usd: float, attributes: Attributes) -> None:
    """Add a call's cost to every open budget it matches (called once per priced call)."""
    budgets = _open
    if not budgets:
        return
    for budget in list(budgets):
        budget.add(usd, attributes)


def _observe() -> Iterable[tuple[float, dict[str, Any]]]:
    for budget in list(_open):
        yield budget.used, {semconv.BUDGET: budget.name}


register_observable(semconv.BUDGET_USED, _observe)


def _reset_after_fork() -> None:
    """A forked child counts its own spending: the parent reports what it spent."""
    global _lock
    _lock = threading.Lock()
    for budget in _open:
        budget._lock = threading.Lock()
        budget._spent = 0.0
        budget._warned = False


os.register_at_fork(after_in_child=_reset_after_fork)
