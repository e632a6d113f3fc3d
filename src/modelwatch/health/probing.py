"""The probing engine behind :class:`~modelwatch.health.Health`: schedules every check's
probe, enforces its timeout, damps flapping, records telemetry and announces state changes.

Time is read from an injectable :class:`~modelwatch.health._workers.Clock`, so tests move
time forward instead of sleeping. Probes run on a :class:`~modelwatch.health._workers.ProbePool`
(sync) or an :class:`~modelwatch.health._workers.AsyncRunner` (async); deadlines are enforced
here, by the scheduler, so a probe that never returns is reported down at its timeout no
matter what it is stuck in.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import structlog

from modelwatch import semconv
from modelwatch._clock import SystemClock
from modelwatch._safety import guard, report_internal_error
from modelwatch.capture._telemetry import allowed_metric_attributes, telemetry
from modelwatch.capture.origin import probing
from modelwatch.errors import ConfigurationError
from modelwatch.health._background import BackgroundProbing
from modelwatch.health._check import Check, Outcome, Run, describe, error_kind, interpret, threshold
from modelwatch.health._graph import root_causes
from modelwatch.health._loops import WrongLoopWarnings, is_wrong_loop, on_loop_thread
from modelwatch.health._workers import AsyncRunner, Clock, Probe, ProbePool
from modelwatch.health.results import Status

__all__ = ["ProbeEngine"]

logger = structlog.get_logger("modelwatch")


class ProbeEngine(BackgroundProbing):
    """Runs the probes of ``self._checks``: the scheduling half of :class:`Health`.

    See :class:`~modelwatch.health.Health` for the arguments.
    """

    def __init__(
        self,
        *,
        flap_threshold: int,
        jitter: float,
        probe_threads: int,
        clock: Clock | None,
        rng: random.Random | None,
    ) -> None:
        self._flap_threshold = threshold(flap_threshold)
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter < 1:
            raise ConfigurationError(
                f"Health(jitter=...): must be a number within 0 (none) and 1 (exclusive), "
                f"got {jitter!r}"
            )
        self._jitter = float(jitter)
        if (
            isinstance(probe_threads, bool)
            or not isinstance(probe_threads, int)
            or probe_threads < 1
        ):
            raise ConfigurationError(
                f"Health(probe_threads=...): must be an int >= 1, got {probe_threads!r}"
            )
        self._probe_threads = probe_threads
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._checks: dict[str, Check] = {}
        self._pool: ProbePool | None = None
        self._loop: AsyncRunner | None = None
        self._app_loop: asyncio.AbstractEventLoop | None = None
        self._wrong_loop = WrongLoopWarnings()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._scheduler: threading.Thread | None = None

    def _note_change(self, check: Check, changes: list[tuple[Check, Status, Status]]) -> None:
        """Remember a change of the effective status (lock held); announce it later."""
        now = check.effective()
        if now != check.reported:
            changes.append((check, check.reported, now))
            check.reported = now

    def _causes(self) -> dict[str, str]:
        """Every check's root cause while one of its dependencies is down (lock held)."""
        checks = self._checks
        edges = {name: c.depends_on for name, c in checks.items() if c.depends_on}
        if not edges:
            return {}
        return root_causes(edges, lambda n: n in checks and checks[n].effective() == "down")

    def _announce(self, changes: list[tuple[Check, Status, Status]]) -> None:
        if not changes:
            return
        with self._lock:
            causes = self._causes()
            for check, _, _ in changes:
                check.cause = causes.get(check.name)
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
                    cause=causes.get(check.name),
                    error=check.error or check.circuit_error,
                )

    def run_pending(self) -> int:
        """Do what is due now: declare overdue probes down, start due probes. Never waits.

        The background scheduler calls this; call it yourself to drive probing from your
        own loop (or, in tests, after moving a fake clock). Returns how many probes started.
        """
        started: list[tuple[Check, Run]] = []
        finished: list[tuple[Check, Outcome]] = []
        changes: list[tuple[Check, Status, Status]] = []
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
                        outcome = Outcome(
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

    def _probe_now(self, names: Iterable[str] | None) -> None:
        """Probe the checks (all, or ``names``) now and wait for each, at most its timeout.
        A check whose previous probe is still stuck is not probed again (it fails again)."""
        if on_loop_thread(self._app_loop):
            raise RuntimeError(
                "run_once() would block the event loop its async probes run on: "
                "use await health.arun_once() there"
            )
        with self._lock:
            wanted = list(self._checks) if names is None else list(names)
            missing = [n for n in wanted if n not in self._checks]
            if missing:
                raise KeyError(f"no such check: {', '.join(missing)}")
            now = self._clock.monotonic()
            waits: list[tuple[Check, Run]] = []
            stuck: list[Check] = []
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

    def _wait(self, check: Check, run: Run) -> Outcome | None:
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

    def _dispatch(self, check: Check, now: float) -> Run:
        """Start ``check``'s probe (lock held)."""
        run = Run(queued=now)
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
            self._loop = AsyncRunner(loop=self._app_loop)
        return self._loop

    def _failure(self, check: Check, exc: BaseException) -> tuple[str, str]:
        """The ``error`` text and ``error.type`` of a probe that raised ``exc``."""
        if is_wrong_loop(exc):  # our mistake or the set-up's, not the target's: say so
            return self._wrong_loop.describe(
                check.name, check.kind, describe(exc)
            ), semconv.ERROR_OTHER
        return describe(exc), error_kind(exc)

    def _probe_sync(self, check: Check, run: Run, probe: Probe) -> None:
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
            with probing():  # model calls a probe makes are not users' calls
                value = probe()
                if inspect.isawaitable(value):  # a sync callable that returned a coroutine
                    value = self._await_elsewhere(value, check.timeout_s)
            status, error = interpret(value)
            self._finish(check, run, status, error, None)
        except BaseException as exc:  # a probe's failure is a result
            self._finish(check, run, "down", *self._failure(check, exc))

    async def _probe_async(self, check: Check, run: Run, probe: Probe) -> None:
        try:
            with probing():  # wait_for's task copies this context: its calls are a probe's
                value = await asyncio.wait_for(probe(), timeout=check.timeout_s)
            status, error = interpret(value)
            self._finish(check, run, status, error, None)
        except asyncio.CancelledError:  # the loop is shutting down: no verdict
            self._abandon(check, run)
            raise
        except BaseException as exc:  # a probe's failure is a result
            if isinstance(exc, TimeoutError) and not str(exc):  # wait_for's own timeout
                self._finish(check, run, "down", self._timeout_text(check), semconv.ERROR_TIMEOUT)
            else:
                self._finish(check, run, "down", *self._failure(check, exc))

    def _await_elsewhere(self, value: Any, timeout_s: float) -> Any:
        """Await what a sync probe returned, from its worker thread: on the application's
        loop if the registry has one (where the objects it awaits were made), else on a
        fresh loop of its own."""
        loop = self._app_loop
        if loop is None or loop.is_closed():
            return asyncio.run(_await(value))
        return asyncio.run_coroutine_threadsafe(_await(value), loop).result(timeout_s)

    @staticmethod
    def _timeout_text(check: Check) -> str:
        return f"timeout: no result within {check.timeout_s:g} s"

    def _finish(
        self,
        check: Check,
        run: Run,
        status: Status,
        error: str | None,
        error_type: str | None,
    ) -> None:
        """A probe returned or raised (any thread): record it unless it was too late."""
        if status == "down" and error_type is None:  # it said so itself, e.g. returned False
            error_type = semconv.ERROR_UNAVAILABLE
        outcome: Outcome | None = None
        changes: list[tuple[Check, Status, Status]] = []
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
                    outcome = Outcome(status, now - started, error, error_type)
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

    def _abandon(self, check: Check, run: Run) -> None:
        """A probe was cancelled by shutdown: forget it without a result."""
        with self._lock:
            if check.run is run:
                check.run = None
        run.done.set()

    def _expire(self, check: Check, run: Run, now: float) -> Outcome:
        """``run`` passed its deadline (lock held): count it as down, keep it in flight."""
        run.timed_out = True
        if run.pool is not None and not run.stuck:  # its worker is stuck now
            run.stuck = True
            run.pool.stuck(+1)
        outcome = Outcome("down", check.timeout_s, self._timeout_text(check), semconv.ERROR_TIMEOUT)
        self._record(check, outcome, now)
        check.next_due = now + self._next_interval(check)
        run.done.set()
        return outcome

    def _record(self, check: Check, outcome: Outcome, now: float) -> None:
        """Apply one raw result to ``check`` with flap damping (lock held)."""
        check.latency_s = outcome.latency_s
        check.checked_at = datetime.fromtimestamp(self._clock.time(), tz=timezone.utc)
        check.error = outcome.error
        was_failing, check.failing = check.failing, outcome.status != "ok"
        if check.failing and not was_failing:
            self._confirm_dependencies(check, now)
        if check.status in ("unknown", outcome.status):
            check.status = outcome.status
            check.against = 0
            return
        check.against += 1
        if check.against >= check.flap_threshold:
            check.status = outcome.status
            check.against = 0

    def _confirm_dependencies(self, check: Check, now: float) -> None:
        """``check`` just started failing: probe its healthy dependencies now rather than at
        their next interval (lock held), so that a root cause is known, and a dependent's
        alert carries it, within moments instead of one dependency interval later."""
        for name in check.depends_on:
            dep = self._checks.get(name)
            if dep is None or dep.probe is None or dep.run is not None or dep.failing:
                continue
            if dep.next_due is not None and dep.next_due > now:
                dep.next_due = now
                self._wake.set()

    def _next_interval(self, check: Check) -> float:
        base = check.down_interval_s if check.failing else check.interval_s
        if self._jitter:
            base *= self._rng.uniform(1.0 - self._jitter, 1.0 + self._jitter)
        return base

    def _emit(self, check: Check, outcome: Outcome) -> None:
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


async def _await(value: Any) -> Any:
    return await value
