"""The health registry: :class:`Health` holds the checks, schedules their probes, damps
flapping, and answers :meth:`Health.report` from cached results.

Time is read from an injectable :class:`~modelwatch.health.probing.Clock`, so tests move
time forward instead of sleeping. Probes run on a :class:`~modelwatch.health.probing.ProbePool`
(sync) or an :class:`~modelwatch.health.probing.AsyncRunner` (async); deadlines are enforced
here, by the scheduler, so a probe that never returns is reported down at its timeout no
matter what it is stuck in.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
import threading
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, cast

import structlog

from modelwatch import semconv
from modelwatch._classify import classify
from modelwatch._safety import guard, report_internal_error
from modelwatch.capture._telemetry import (
    allowed_metric_attributes,
    register_observable,
    telemetry,
)
from modelwatch.health._scrub import scrub
from modelwatch.health.probing import (
    AsyncRunner,
    Clock,
    Probe,
    ProbePool,
    SystemClock,
    is_async_probe,
)
from modelwatch.health.results import (
    KINDS,
    STATUS_VALUE,
    CheckResult,
    CircuitState,
    HealthReport,
    Kind,
    Status,
    worse,
)

if TYPE_CHECKING:
    from modelwatch.health.asgi import HealthASGI
    from modelwatch.health.wsgi import HealthWSGI

__all__ = ["Health"]

logger = structlog.get_logger("modelwatch")

#: The longest the background scheduler sleeps without looking at the clock again.
_MAX_IDLE_S: Final = 0.5
_BREAKER_STATUS: Final[dict[str, Status]] = {
    "closed": "ok",
    "half_open": "degraded",
    "open": "down",
}

_live: weakref.WeakSet[Health] = weakref.WeakSet()
_live_lock = threading.Lock()


def _observe_status() -> Iterator[tuple[float, dict[str, Any]]]:
    """The ``modelwatch.health.status`` gauge: one point per known check of every live Health."""
    with _live_lock:
        registries = list(_live)
    for health in registries:
        for check in health.report().checks:
            if check.status == "unknown":
                continue
            yield (
                STATUS_VALUE[check.status],
                {semconv.HEALTH_CHECK: check.name, semconv.HEALTH_KIND: check.kind},
            )


register_observable(semconv.HEALTH_STATUS, _observe_status)


def _error_kind(exc: BaseException) -> str:
    """The ``error.type`` of a probe failure: :func:`modelwatch.classify`, except that a
    probe which fails for no known reason says its target is unavailable."""
    kind = classify(exc)
    return semconv.ERROR_UNAVAILABLE if kind == semconv.ERROR_OTHER else kind


def _describe(exc: BaseException) -> str:
    """A short, scrubbed ``Type: message`` for the ``error`` field; never a traceback."""
    message = str(exc)
    return scrub(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


def _interpret(value: Any) -> tuple[Status, str | None]:
    """Turn what a probe returned into a status (see :data:`~modelwatch.health.probing.Probe`)."""
    if value is None or value is True:
        return "ok", None
    if value is False:
        return "down", "probe returned False"
    if isinstance(value, str) and value in ("ok", "degraded", "down"):
        return cast(Status, value), None if value == "ok" else f"probe reported {value}"
    return ("ok", None) if value else ("down", f"probe returned {type(value).__name__}")


@dataclass(eq=False)
class _Run:
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
class _Outcome:
    """One probe result, before damping."""

    status: Status
    latency_s: float
    error: str | None
    error_type: str | None


@dataclass(eq=False)
class _Check:
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
    run: _Run | None = None
    next_due: float | None = None

    def effective(self) -> Status:
        """The probe's damped status combined with the breaker's (the worse one wins)."""
        breaker = _BREAKER_STATUS.get(self.circuit) if self.circuit else None
        if breaker is None:
            return self.status
        if self.probe is None or self.status == "unknown":
            return breaker
        return worse(self.status, breaker)

    def snapshot(self) -> CheckResult:
        """This check as a :class:`CheckResult`."""
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
        )


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _threshold(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"flap_threshold must be an int >= 1, got {value!r}")
    return value


class Health:
    """A registry of health checks with background probing and HTTP endpoints.

    ::

        health = modelwatch.Health()
        health.add("google/flan-t5-large", probe=ping_flan, kind="model", critical=True)
        health.add("redis", probe=redis_client.ping, kind="dependency", critical=True)
        health.add_router(router)        # one model check per backend, fed by its breaker
        with health:                     # start() ... stop()
            app.mount("/health", health.asgi())

    ``flap_threshold`` is how many consecutive results the other way a check needs before
    its status changes (the first result always counts at once). ``degraded_below`` is the
    score under which the overall status is ``degraded``. ``jitter`` spreads each interval
    by ±that fraction so checks do not probe in lock-step. ``probe_threads`` is how many
    sync probes may run at once (threads stuck in hung probes come on top, one per hung
    check at most). ``clock`` and ``rng`` are for tests.
    """

    def __init__(
        self,
        *,
        flap_threshold: int = 2,
        degraded_below: float = 0.9,
        jitter: float = 0.1,
        probe_threads: int = 8,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._flap_threshold = _threshold(flap_threshold)
        if not 0.0 <= degraded_below <= 1.0:
            raise ValueError(f"degraded_below must be within 0..1, got {degraded_below!r}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be within 0 (none) and 1 (exclusive), got {jitter!r}")
        self.degraded_below = float(degraded_below)
        self._jitter = float(jitter)
        if (
            isinstance(probe_threads, bool)
            or not isinstance(probe_threads, int)
            or probe_threads < 1
        ):
            raise ValueError(f"probe_threads must be an int >= 1, got {probe_threads!r}")
        self._probe_threads = probe_threads
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._checks: dict[str, _Check] = {}
        self._pool: ProbePool | None = None
        self._loop: AsyncRunner | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._scheduler: threading.Thread | None = None
        with _live_lock:
            _live.add(self)

    # ------------------------------------------------------------------ registration
    def add(
        self,
        name: str,
        probe: Probe,
        *,
        kind: Kind = "model",
        timeout_s: float = 5.0,
        interval_s: float = 30.0,
        critical: bool = False,
        weight: float = 1.0,
        down_interval_s: float | None = None,
        flap_threshold: int | None = None,
    ) -> None:
        """Register a check called ``name`` whose ``probe`` (sync or ``async def``) runs
        every ``interval_s`` (±jitter), at most ``timeout_s`` each time, and every
        ``down_interval_s`` while failing (default: a fifth of the interval, at least 1 s).

        ``kind`` is ``"model"``, ``"analysis"`` or ``"dependency"``. A ``critical`` check that
        is down makes the whole service down (and ``/ready`` answer 503); ``weight`` is its
        share of the score. Raises ``ValueError``/``TypeError`` on invalid arguments and
        ``ValueError`` if the name is taken.
        """
        if not callable(probe):
            raise TypeError(f"probe for check {name!r} must be callable, got {probe!r}")
        self._register(
            self._build(
                name,
                probe,
                kind=kind,
                timeout_s=timeout_s,
                interval_s=interval_s,
                critical=critical,
                weight=weight,
                down_interval_s=down_interval_s,
                flap_threshold=flap_threshold,
            )
        )

    def add_router(
        self,
        router: Any,
        *,
        critical: bool = False,
        weight: float = 1.0,
        timeout_s: float = 5.0,
        interval_s: float = 30.0,
    ) -> list[str]:
        """Add one ``model`` check per backend of ``router`` (a :class:`modelwatch.Router`),
        named after the backend's model (or after the backend's name, if two backends of the
        router share a model); returns the names. All are added, or none.

        A backend's status is its breaker state, read live at every report (open is
        ``down``, half-open ``degraded``), combined with its probe if the backend has one
        (the worse of the two wins). The breaker's own thresholds do the damping, so a
        primary whose breaker opens shows as down in the very next report.
        """
        statuses = list(router.status())
        probes = {
            _backend_key(b): getattr(b, "probe", None)
            for b in getattr(router, "backends", ()) or ()
        }
        models = [str(s.model) for s in statuses]
        checks = []
        for backend in statuses:
            key = _backend_key(backend)
            model = str(backend.model)
            probe = probes.get(key)
            if probe is not None and not callable(probe):
                probe = None
            check = self._build(
                model if models.count(model) == 1 else key,
                probe,
                kind="model",
                timeout_s=timeout_s,
                interval_s=interval_s,
                critical=critical,
                weight=weight,
                down_interval_s=None,
                flap_threshold=None,
            )
            check.router = router
            check.backend = key
            _apply_breaker(check, backend)
            checks.append(check)
        self._register(*checks)
        return [c.name for c in checks]

    def _build(
        self,
        name: str,
        probe: Probe | None,
        *,
        kind: str,
        timeout_s: float,
        interval_s: float,
        critical: bool,
        weight: float,
        down_interval_s: float | None,
        flap_threshold: int | None,
    ) -> _Check:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a check needs a non-empty name, got {name!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        timeout = _positive("timeout_s", timeout_s)
        interval = _positive("interval_s", interval_s)
        if down_interval_s is None:
            down_interval = min(interval, max(interval / 5.0, 1.0))
        else:
            down_interval = _positive("down_interval_s", down_interval_s)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise TypeError(f"weight must be a number, got {weight!r}")
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")
        return _Check(
            name=name,
            kind=cast(Kind, kind),
            probe=probe,
            is_async=probe is not None and is_async_probe(probe),
            timeout_s=timeout,
            interval_s=interval,
            down_interval_s=down_interval,
            critical=bool(critical),
            weight=float(weight),
            flap_threshold=self._flap_threshold
            if flap_threshold is None
            else _threshold(flap_threshold),
        )

    def _register(self, *checks: _Check) -> None:
        """Add ``checks`` all at once, or none of them if any name is taken."""
        with self._lock:
            seen: set[str] = set()
            for check in checks:
                if check.name in self._checks or check.name in seen:
                    raise ValueError(f"a check called {check.name!r} already exists")
                seen.add(check.name)
            for check in checks:
                self._checks[check.name] = check
        self._wake.set()

    def __len__(self) -> int:
        return len(self._checks)

    def __contains__(self, name: object) -> bool:
        return name in self._checks

    @property
    def names(self) -> list[str]:
        """The checks' names, in the order they were added."""
        with self._lock:
            return list(self._checks)

    # ------------------------------------------------------------------ reporting
    def report(self, *, kind: Kind | None = None) -> HealthReport:
        """The current health, from cached results: never runs a probe, never waits.

        With ``kind``, only the checks of that kind (and a status and score over them).
        """
        self._refresh_circuits()
        changes: list[tuple[_Check, Status, Status]] = []
        with self._lock:
            checks = [c for c in self._checks.values() if kind is None or c.kind == kind]
            results = []
            for check in checks:
                results.append(check.snapshot())
                self._note_change(check, changes)
        self._announce(changes)
        now = datetime.fromtimestamp(self._clock.time(), tz=timezone.utc)
        return HealthReport.build(results, checked_at=now, degraded_below=self.degraded_below)

    def _refresh_circuits(self) -> None:
        """Read every router's breaker states (in-memory, fast) into its checks."""
        with self._lock:
            routers: dict[int, tuple[Any, list[_Check]]] = {}
            for check in self._checks.values():
                if check.router is not None:
                    routers.setdefault(id(check.router), (check.router, []))[1].append(check)
        for router, checks in routers.values():
            try:
                by_key = {_backend_key(s): s for s in router.status()}
            except Exception as exc:
                report_internal_error("health.router_status", exc)
                by_key = {}
            with self._lock:
                for check in checks:
                    _apply_breaker(check, by_key.get(check.backend or check.name))

    def _note_change(self, check: _Check, changes: list[tuple[_Check, Status, Status]]) -> None:
        """Remember a change of the effective status (lock held); announce it later."""
        now = check.effective()
        if now != check.reported:
            changes.append((check, check.reported, now))
            check.reported = now

    def _announce(self, changes: list[tuple[_Check, Status, Status]]) -> None:
        for check, previous, status in changes:
            with guard("health.state_change"):
                log = logger.warning if status == "down" else logger.info
                log(
                    "modelwatch.health.state_change",
                    check=check.name,
                    kind=check.kind,
                    previous=previous,
                    status=status,
                    critical=check.critical,
                    error=check.error or check.circuit_error,
                )

    # ------------------------------------------------------------------ probing
    def run_pending(self) -> int:
        """Do what is due now: declare overdue probes down, start due probes. Never waits.

        The background scheduler calls this; call it yourself to drive probing from your
        own loop (or, in tests, after moving a fake clock). Returns how many probes started.
        """
        started: list[tuple[_Check, _Run]] = []
        finished: list[tuple[_Check, _Outcome]] = []
        changes: list[tuple[_Check, Status, Status]] = []
        with self._lock:
            now = self._clock.monotonic()
            for check in self._checks.values():
                if check.probe is None:
                    continue
                run = check.run
                if run is not None and not run.timed_out and now >= run.deadline:
                    finished.append((check, self._expire(check, run, now)))
                    self._note_change(check, changes)
                if check.next_due is None:
                    check.next_due = now + self._rng.uniform(0.0, self._jitter) * min(
                        check.interval_s, 10.0
                    )
                if now < check.next_due:
                    continue
                if check.run is not None:
                    # a run within its deadline reschedules the check when it ends
                    if check.run.timed_out:  # still stuck: fail again, start nothing
                        stuck_for = now - (check.run.started or check.run.queued)
                        outcome = _Outcome(
                            "down",
                            stuck_for,
                            f"timeout: previous probe still running after {stuck_for:.1f} s",
                            semconv.ERROR_TIMEOUT,
                        )
                        self._record(check, outcome, now)
                        check.next_due = now + self._next_interval(check)
                        finished.append((check, outcome))
                        self._note_change(check, changes)
                    continue
                started.append((check, self._dispatch(check, now)))
        for check, outcome in finished:
            self._emit(check, outcome)
        self._announce(changes)
        return len(started)

    def run_once(self, names: Iterable[str] | None = None) -> HealthReport:
        """Probe the checks (all, or ``names``) now, wait for them — each at most its
        timeout — and return the report. Useful at start-up, in scripts and in tests.

        A check whose previous probe is still stuck is not probed again (it fails again).
        """
        with self._lock:
            wanted = list(self._checks) if names is None else list(names)
            missing = [n for n in wanted if n not in self._checks]
            if missing:
                raise KeyError(f"no such check: {', '.join(missing)}")
            now = self._clock.monotonic()
            waits: list[tuple[_Check, _Run]] = []
            stuck: list[_Check] = []
            for name in wanted:
                check = self._checks[name]
                if check.probe is None:
                    continue
                if check.run is None:
                    waits.append((check, self._dispatch(check, now)))
                elif check.run.timed_out:
                    stuck.append(check)
                else:
                    waits.append((check, check.run))
        for check, run in waits:
            outcome = self._wait(check, run)
            if outcome is not None:
                self._emit(check, outcome)
        if stuck:
            with self._lock:
                now = self._clock.monotonic()
                for check in stuck:
                    if check.next_due is not None:
                        check.next_due = min(check.next_due, now)
            self.run_pending()
        return self.report()

    def _wait(self, check: _Check, run: _Run) -> _Outcome | None:
        """Wait for ``run`` to finish, at most its timeout once started; expire it then."""
        queued_rounds = 0
        while not run.done.is_set():
            with self._lock:
                started = run.started is not None
                remaining = run.deadline - self._clock.monotonic() if started else check.timeout_s
            if run.done.wait(max(0.0, remaining)):
                break
            if not started and queued_rounds < 2:  # waiting for a worker: not its fault yet
                queued_rounds += 1
                continue
            with self._lock:
                if check.run is run and not run.timed_out:
                    # real time is up even if a fake clock says otherwise
                    now = self._clock.monotonic()
                    return self._expire(check, run, now if not started else max(now, run.deadline))
            return None
        return None

    def _dispatch(self, check: _Check, now: float) -> _Run:
        """Start ``check``'s probe (lock held)."""
        run = _Run(queued=now)
        check.run = run
        # a placeholder: the result (or the timeout) reschedules the check
        check.next_due = now + check.timeout_s + check.interval_s
        probe = check.probe
        assert probe is not None
        if check.is_async:
            run.started, run.deadline = now, now + check.timeout_s
            accepted = self._async_runner().submit(lambda: self._probe_async(check, run, probe))
        else:
            run.pool = self._sync_pool()
            accepted = run.pool.submit(lambda: self._probe_sync(check, run, probe))
        if not accepted:  # shutting down
            check.run = None
            run.done.set()
        return run

    def _sync_pool(self) -> ProbePool:
        if self._pool is None:
            self._pool = ProbePool(concurrency=self._probe_threads)
        return self._pool

    def _async_runner(self) -> AsyncRunner:
        if self._loop is None:
            self._loop = AsyncRunner()
        return self._loop

    def _probe_sync(self, check: _Check, run: _Run, probe: Probe) -> None:
        with self._lock:  # a worker picked it up: the clock starts now
            if check.run is not run:  # abandoned by stop() while it waited for a worker
                run.done.set()
                return
            now = self._clock.monotonic()
            run.started, run.deadline = now, now + check.timeout_s
            if check.run is run:
                check.next_due = run.deadline + check.interval_s
        self._wake.set()
        try:
            value = probe()
            if inspect.isawaitable(value):  # a sync callable that returned a coroutine
                value = asyncio.run(_await(value))
            status, error = _interpret(value)
            self._finish(check, run, status, error, None)
        except BaseException as exc:  # a probe's failure is a result
            self._finish(check, run, "down", _describe(exc), _error_kind(exc))

    async def _probe_async(self, check: _Check, run: _Run, probe: Probe) -> None:
        try:
            value = await asyncio.wait_for(probe(), timeout=check.timeout_s)
            status, error = _interpret(value)
            self._finish(check, run, status, error, None)
        except asyncio.CancelledError:  # the loop is shutting down: no verdict
            self._abandon(check, run)
            raise
        except BaseException as exc:  # a probe's failure is a result
            if isinstance(exc, TimeoutError) and not str(exc):  # wait_for's own timeout
                self._finish(check, run, "down", self._timeout_text(check), semconv.ERROR_TIMEOUT)
            else:
                self._finish(check, run, "down", _describe(exc), _error_kind(exc))

    @staticmethod
    def _timeout_text(check: _Check) -> str:
        return f"timeout: no result within {check.timeout_s:g} s"

    def _finish(
        self,
        check: _Check,
        run: _Run,
        status: Status,
        error: str | None,
        error_type: str | None,
    ) -> None:
        """A probe returned or raised (any thread): record it unless it was too late."""
        if status == "down" and error_type is None:  # it said so itself, e.g. returned False
            error_type = semconv.ERROR_UNAVAILABLE
        outcome: _Outcome | None = None
        changes: list[tuple[_Check, Status, Status]] = []
        try:
            with self._lock:
                now = self._clock.monotonic()
                if check.run is run:
                    check.run = None
                if run.stuck and run.pool is not None:  # a stuck worker came back
                    run.pool.stuck(-1)
                    run.stuck = False
                if run.timed_out:
                    # already counted as a timeout; the check may now be probed again
                    if check.next_due is not None:
                        check.next_due = min(check.next_due, now + check.down_interval_s)
                else:
                    run.timed_out = now > run.deadline
                    if run.timed_out:  # finished, but after its deadline: still a timeout
                        status, error = "down", self._timeout_text(check)
                        error_type = semconv.ERROR_TIMEOUT
                    started = run.started if run.started is not None else run.queued
                    outcome = _Outcome(status, now - started, error, error_type)
                    self._record(check, outcome, now)
                    check.next_due = now + self._next_interval(check)
                    self._note_change(check, changes)
            if outcome is not None:
                self._emit(check, outcome)
            self._announce(changes)
        except Exception as exc:
            report_internal_error("health.finish", exc)
        finally:
            run.done.set()
            self._wake.set()

    def _abandon(self, check: _Check, run: _Run) -> None:
        """A probe was cancelled by shutdown: forget it without a result."""
        with self._lock:
            if check.run is run:
                check.run = None
        run.done.set()

    def _expire(self, check: _Check, run: _Run, now: float) -> _Outcome:
        """``run`` passed its deadline (lock held): count it as down, keep it in flight."""
        run.timed_out = True
        if run.pool is not None and not run.stuck:  # its worker is stuck now
            run.stuck = True
            run.pool.stuck(+1)
        outcome = _Outcome(
            "down", check.timeout_s, self._timeout_text(check), semconv.ERROR_TIMEOUT
        )
        self._record(check, outcome, now)
        check.next_due = now + self._next_interval(check)
        run.done.set()
        return outcome

    def _record(self, check: _Check, outcome: _Outcome, now: float) -> None:
        """Apply one raw result to ``check`` with flap damping (lock held)."""
        check.latency_s = outcome.latency_s
        check.checked_at = datetime.fromtimestamp(self._clock.time(), tz=timezone.utc)
        check.error = outcome.error
        check.failing = outcome.status != "ok"
        if check.status in ("unknown", outcome.status):
            check.status = outcome.status
            check.against = 0
            return
        check.against += 1
        if check.against >= check.flap_threshold:
            check.status = outcome.status
            check.against = 0

    def _next_interval(self, check: _Check) -> float:
        base = check.down_interval_s if check.failing else check.interval_s
        if self._jitter:
            base *= self._rng.uniform(1.0 - self._jitter, 1.0 + self._jitter)
        return base

    def _emit(self, check: _Check, outcome: _Outcome) -> None:
        """Record the probe's duration on ``modelwatch.health.check.duration``."""
        with guard("health.telemetry"):
            attributes = allowed_metric_attributes(
                {
                    semconv.HEALTH_CHECK: check.name,
                    semconv.HEALTH_KIND: check.kind,
                    semconv.ERROR_TYPE: outcome.error_type,
                }
            )
            telemetry().instrument(semconv.HEALTH_CHECK_DURATION).record(
                outcome.latency_s, attributes
            )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start probing in the background (idempotent). Probes start within a short,
        jittered delay; until a check's first result it reports ``unknown``."""
        with self._lock:
            if self._scheduler is not None and self._scheduler.is_alive():
                return
            self._stopping.clear()
            self._scheduler = threading.Thread(
                target=self._schedule, name="modelwatch-health-scheduler", daemon=True
            )
            self._scheduler.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop probing; wait (at most ``timeout_s``) for the scheduler. Probes still
        running finish on their own; hung ones stay parked on daemon threads."""
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
            pool, self._pool = self._pool, None
            loop, self._loop = self._loop, None
            for check in self._checks.values():  # probes still waiting for a worker: drop
                if check.run is not None and check.run.started is None:
                    check.run.done.set()
                    check.run = None
        self._stopping.set()
        self._wake.set()
        if scheduler is not None:
            scheduler.join(timeout_s)
        if pool is not None:
            pool.close()
        if loop is not None:
            loop.close()

    def __enter__(self) -> Health:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether background probing is on."""
        scheduler = self._scheduler
        return scheduler is not None and scheduler.is_alive()

    def _schedule(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.run_pending()
                delay = self._until_next()
            except Exception as exc:  # never let the scheduler die
                report_internal_error("health.scheduler", exc)
                delay = _MAX_IDLE_S
            self._wake.wait(delay)

    def _until_next(self) -> float:
        with self._lock:
            now = self._clock.monotonic()
            probed = [c for c in self._checks.values() if c.probe is not None]
            if any(c.next_due is None for c in probed):
                return 0.0
            moments = [c.next_due for c in probed if c.next_due is not None]
            moments += [
                c.run.deadline
                for c in probed
                if c.run is not None and not c.run.timed_out and c.run.started is not None
            ]
        if not moments:
            return _MAX_IDLE_S
        return min(max(min(moments) - now, 0.0), _MAX_IDLE_S)

    # ------------------------------------------------------------------ HTTP
    def asgi(self, *, token: str | None = None) -> HealthASGI:
        """An ASGI app serving DESIGN §6's endpoints; mount it in Starlette or FastAPI::

            app.mount("/health", health.asgi())

        With ``token``, every route but ``/live`` needs ``Authorization: Bearer <token>``.
        """
        from modelwatch.health.asgi import HealthASGI

        return HealthASGI(self, token=token)

    def wsgi(self, *, token: str | None = None) -> HealthWSGI:
        """A WSGI app serving DESIGN §6's endpoints, for Flask, Django or any WSGI server.

        With ``token``, every route but ``/live`` needs ``Authorization: Bearer <token>``.
        """
        from modelwatch.health.wsgi import HealthWSGI

        return HealthWSGI(self, token=token)


async def _await(value: Any) -> Any:
    return await value


def _backend_key(backend: Any) -> str:
    """A backend's unique name in its router (its model if it has no name)."""
    return str(getattr(backend, "name", None) or backend.model)


def _apply_breaker(check: _Check, backend: Any) -> None:
    """Copy a router's ``BackendStatus`` (or its absence) into ``check`` (lock held)."""
    if backend is None:
        check.circuit = None
        check.circuit_error = None
        return
    state = getattr(backend, "state", None)
    check.circuit = cast(CircuitState, state) if state in _BREAKER_STATUS else None
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
