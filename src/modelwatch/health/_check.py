"""A check's configuration and state, one probe run, and turning probe outcomes into
statuses and error text. Internal to :mod:`modelwatch.health`."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

from modelwatch import semconv
from modelwatch._classify import classify
from modelwatch.capture.scrub import scrub_line as scrub
from modelwatch.errors import ConfigurationError
from modelwatch.health._workers import Probe, ProbePool
from modelwatch.health.results import CheckResult, CircuitState, Kind, Status, worse

BREAKER_STATUS: Final[dict[str, Status]] = {
    "closed": "ok",
    "half_open": "degraded",
    "open": "down",
}


def error_kind(exc: BaseException) -> str:
    """The ``error.type`` of a probe failure: :func:`modelwatch.classify`, except that a
    probe which fails for no known reason says its target is unavailable."""
    kind = classify(exc)
    return semconv.ERROR_UNAVAILABLE if kind == semconv.ERROR_OTHER else kind


def describe(exc: BaseException) -> str:
    """A short, scrubbed ``Type: message`` for the ``error`` field; never a traceback."""
    message = str(exc)
    return scrub(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


def interpret(value: Any) -> tuple[Status, str | None]:
    """Turn what a probe returned into a status (see :data:`~modelwatch.health.Probe`)."""
    if value is None or value is True:
        return "ok", None
    if value is False:
        return "down", "probe returned False"
    if isinstance(value, str) and value in ("ok", "degraded", "down"):
        return cast(Status, value), None if value == "ok" else f"probe reported {value}"
    return ("ok", None) if value else ("down", f"probe returned {type(value).__name__}")


@dataclass(eq=False)
class Run:
    """One probe in flight. A sync probe may wait for a worker: its deadline starts when it
    starts, so a busy pool never turns into false timeouts."""

    queued: float
    started: float | None = None
    deadline: float = math.inf
    pool: ProbePool | None = None  # the pool of a sync probe
    stuck: bool = False  # counted as a stuck worker of ``pool``
    done: threading.Event = field(default_factory=threading.Event)
    timed_out: bool = False


@dataclass(eq=False)
class Outcome:
    """One probe result, before damping."""

    status: Status
    latency_s: float
    error: str | None
    error_type: str | None


@dataclass(eq=False)
class Check:
    """A check's configuration and its mutable state (guarded by the registry's lock)."""

    name: str
    kind: Kind
    probe: Probe | None
    is_async: bool
    timeout_s: float
    interval_s: float
    down_interval_s: float
    critical: bool
    weight: float
    flap_threshold: int
    depends_on: tuple[str, ...] = ()  # the checks this one needs (docs/health.md)
    router: Any = None  # for router backends: the router whose status() feeds the breaker
    backend: str | None = None  # ... and the backend's name in it
    # state
    status: Status = "unknown"  # damped probe status
    against: int = 0  # consecutive results that disagreed with ``status``
    failing: bool = False  # the latest raw result was not ok: re-probe faster
    latency_s: float | None = None
    checked_at: datetime | None = None
    error: str | None = None
    circuit: CircuitState | None = None
    circuit_error: str | None = None
    reported: Status = "unknown"  # last effective status announced, for state-change events
    warming: bool = False  # a router warm-up of this backend is under way: never down
    cause: str | None = None  # the root cause when ``reported`` was announced (history)
    run: Run | None = None
    next_due: float | None = None

    def effective(self) -> Status:
        """The probe's damped status combined with the breaker's (the worse one wins)."""
        breaker = BREAKER_STATUS.get(self.circuit) if self.circuit else None
        if breaker is None:
            status = self.status
        elif self.probe is None or self.status == "unknown":
            status = breaker
        else:
            status = worse(self.status, breaker)
        # a backend being warmed up is expected not to answer yet: degraded, not down
        return "degraded" if self.warming and status == "down" else status

    def snapshot(self, cause: str | None = None) -> CheckResult:
        """This check as a :class:`CheckResult` (``cause``: its root cause, if any)."""
        status = self.effective()
        # a failing probe's error shows even while damping still says ok
        error = self.error or (self.circuit_error if status != "ok" else None)
        return CheckResult(
            name=self.name,
            kind=self.kind,
            status=status,
            latency_s=self.latency_s,
            checked_at=self.checked_at,
            error=error,
            critical=self.critical,
            weight=self.weight,
            circuit=self.circuit,
            cause=cause,
            depends_on=self.depends_on,
        )


def positive(name: str, value: float) -> float:
    """``value`` as a float if it is a finite number of seconds > 0, else a
    :class:`~modelwatch.errors.ConfigurationError` naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def threshold(value: int) -> int:
    """``value`` if it is a valid ``flap_threshold`` (an int >= 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"flap_threshold must be an int >= 1, got {value!r}")
    return value


def flag(name: str, value: object) -> bool:
    """``value`` if it is a bool (``critical='yes'`` is a mistake, not a truthy value)."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {value!r}")
    return value


def share(name: str, value: object) -> float:
    """``value`` as a float if it is a finite number >= 0 (a weight)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def backend_key(backend: Any) -> str:
    """A backend's unique name in its router (its model if it has no name)."""
    return str(getattr(backend, "name", None) or backend.model)


def apply_breaker(check: Check, backend: Any) -> None:
    """Copy a router's ``BackendStatus`` (or its absence) into ``check`` (lock held)."""
    if backend is None:
        check.circuit = None
        check.circuit_error = None
        check.warming = False
        return
    check.warming = getattr(backend, "warming", False) is True
    state = getattr(backend, "state", None)
    check.circuit = cast(CircuitState, state) if state in BREAKER_STATUS else None
    if check.circuit in ("open", "half_open"):
        detail = [f"circuit {check.circuit.replace('_', '-')}"]
        last_error = getattr(backend, "last_error", None)
        if last_error:
            detail.append(f"last error: {last_error}")
        retry = getattr(backend, "retry_after_s", None)
        if isinstance(retry, int | float) and retry > 0:
            detail.append(f"retry in {retry:.1f} s")
        check.circuit_error = scrub("; ".join(detail))
    else:
        check.circuit_error = None
    if check.warming:
        check.circuit_error = "warming up" + (
            f"; {check.circuit_error}" if check.circuit_error else ""
        )
