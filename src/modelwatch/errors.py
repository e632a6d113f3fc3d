"""modelwatch's exceptions, and :func:`classify`, which maps any exception to an error kind.

The error kind is the ``error.type`` of spans and metrics and drives the router's policy
(docs/router.md). :mod:`modelwatch.errorkinds` says what each kind means;
:mod:`modelwatch._classify` maps exceptions to kinds.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AllBackendsFailedError",
    "Attempt",
    "BudgetExceededError",
    "CircuitOpenError",
    "ConfigurationError",
    "ModelwatchError",
    "StreamInterruptedError",
]


class ModelwatchError(Exception):
    """Base class of every exception modelwatch raises on purpose."""


class ConfigurationError(ModelwatchError, ValueError):
    """A setting given to :func:`modelwatch.configure` (or read from the environment) is invalid.

    The message names the setting, the value and what is accepted.
    """


class CircuitOpenError(ModelwatchError):
    """A call was refused because its circuit breaker is open.

    ``name`` is the breaker's name and ``retry_after_s`` how long until it admits a trial call.
    """

    def __init__(self, name: str, retry_after_s: float | None = None) -> None:
        self.name = name
        self.retry_after_s = retry_after_s
        when = "" if retry_after_s is None else f"; next trial in {retry_after_s:.1f} s"
        super().__init__(f"circuit {name!r} is open{when}")


@dataclass(frozen=True)
class Attempt:
    """One attempt a router made: which model, how it failed, and how long it took."""

    model: str
    error_kind: str
    exception: BaseException | None
    duration_s: float


class AllBackendsFailedError(ModelwatchError):
    """Every backend of a router failed or was unavailable within the call's deadline.

    ``attempts`` lists each attempt in order; ``retry_after_s`` is the soonest time any
    backend may take calls again (or ``None``). ``__cause__`` is the last backend exception.
    """

    def __init__(
        self,
        router: str,
        attempts: list[Attempt],
        retry_after_s: float | None = None,
    ) -> None:
        self.router = router
        self.attempts = attempts
        self.retry_after_s = retry_after_s
        tried = ", ".join(f"{a.model}: {a.error_kind}" for a in attempts) or "no backend admitted"
        super().__init__(f"all backends of router {router!r} failed ({tried})")


class StreamInterruptedError(ModelwatchError):
    """A stream broke after content had already been delivered, so it could not fail over.

    ``chunks`` is how many chunks the caller received; ``__cause__`` is the backend error.
    """

    def __init__(self, model: str, chunks: int, kind: str) -> None:
        self.model = model
        self.chunks = chunks
        self.kind = kind
        super().__init__(f"stream from {model!r} broke after {chunks} chunk(s): {kind}")


class BudgetExceededError(ModelwatchError):
    """A call was refused because a cost budget with ``enforce="refuse"`` is spent.

    ``budget`` is the budget's name, ``spent_usd`` and ``limit_usd`` its spend and limit in
    the current period, and ``period_end`` when that period ends (epoch seconds, UTC): the
    budget admits calls again from then on.
    """

    def __init__(self, budget: str, spent_usd: float, limit_usd: float, period_end: float) -> None:
        self.budget = budget
        self.spent_usd = spent_usd
        self.limit_usd = limit_usd
        self.period_end = period_end
        super().__init__(
            f"budget {budget!r} is spent ({spent_usd:.4f} of {limit_usd:.4f} USD) "
            f"until {_utc(period_end)}"
        )


def _utc(epoch_s: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
