"""The failover router: ordered backends, each behind its own breaker, with deadlines.

One call walks the backends in order (see :mod:`modelwatch.resilience.ordering`). A backend
whose breaker refuses, or which is benched after a 429, is skipped at once; a failed attempt
fails over to the next backend without sleeping. Only when no backend can take the call is
one retried, after its ``Retry-After`` (or the reopening of its breaker), within the call's
deadline and a retry budget. Errors that say "your request is wrong" (``bad_request``) or
"unknown error" (``_OTHER``, unless :attr:`RetryPolicy.failover_on_other`) surface as the
original exception; cancellation propagates at once and releases the breaker permit.

The policy lives in one generator, :meth:`Router._plan`, that asks its driver to run
attempts (or to sleep) and receives their outcomes: the sync, async and streaming drivers
(:mod:`modelwatch.resilience._streaming`) share it, so the twins cannot drift apart.

Telemetry: a ``route {router}`` INTERNAL span per call, one child model span per attempt
(from :mod:`modelwatch.capture`, with ``modelwatch.router`` and ``modelwatch.attempt``),
span events for failover, retry and rejection, and the ``modelwatch.failovers``,
``modelwatch.failover.duration`` and ``modelwatch.rate_limit.remaining`` metrics.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from modelwatch import semconv
from modelwatch._clock import SYSTEM_CLOCK, Clock
from modelwatch._safety import guard, report_internal_error
from modelwatch.capture._telemetry import Attributes, register_observable, telemetry
from modelwatch.capture.call import Call, start_call
from modelwatch.capture.scrub import record_exception
from modelwatch.errors import (
    AllBackendsFailedError,
    Attempt,
    CircuitOpenError,
    ConfigurationError,
)
from modelwatch.resilience import _events, _streaming
from modelwatch.resilience._budget import RetryBudget
from modelwatch.resilience._kinds import Classifier, default_classify, retry_after_s
from modelwatch.resilience._members import Member, Outcome, Plan, Req
from modelwatch.resilience.backend import Backend, BackendStatus
from modelwatch.resilience.breaker import Breaker, Permit
from modelwatch.resilience.canary import CanaryStatus, canary_for
from modelwatch.resilience.deadline import (
    AttemptTimeoutError,
    Deadline,
    WorkerPool,
    await_within,
)
from modelwatch.resilience.ordering import Ordering, Priority
from modelwatch.resilience.policy import BreakerPolicy, RetryPolicy

__all__ = ["Backend", "BackendStatus", "Router"]

#: How long a 429 without ``Retry-After`` benches a backend.
DEFAULT_BENCH_S: Final = 1.0
#: A ``Retry-After`` longer than this is treated as this (a bogus header cannot bench forever).
MAX_BENCH_S: Final = 3600.0
#: Reasons of failovers and rejections that are not error kinds.
REASON_CIRCUIT_OPEN: Final = semconv.REASON_CIRCUIT_OPEN
REASON_BENCHED: Final = "rate_limited"

_FAILOVER_KINDS: Final = frozenset(
    {
        semconv.ERROR_RATE_LIMITED,
        semconv.ERROR_TIMEOUT,
        semconv.ERROR_UNAVAILABLE,
        semconv.ERROR_AUTH,
        semconv.ERROR_NOT_FOUND,
    }
)

_routers: weakref.WeakSet[Router] = weakref.WeakSet()


#: A rate-limit reading older than this is no longer reported: answers without headers (or
#: no traffic) would otherwise leave a "0 % left" reading, and its alert, standing forever.
RATE_LIMIT_READING_TTL_S = 120.0


def _current_rate_limits(m: Member) -> dict[str, float]:
    if time.monotonic() - m.rate_limits_at > RATE_LIMIT_READING_TTL_S:
        return {}
    return dict(m.rate_limits)


def _observe_rate_limits() -> Iterable[tuple[float, Attributes]]:
    for router in list(_routers):
        for m in router._members:
            for resource, ratio in _current_rate_limits(m).items():
                yield (
                    ratio,
                    {
                        semconv.MODELWATCH_ROUTER: router.name,
                        semconv.GEN_AI_REQUEST_MODEL: m.backend.model,
                        semconv.RATE_LIMIT_RESOURCE: resource,
                    },
                )


register_observable(semconv.RATE_LIMIT_REMAINING, _observe_rate_limits)


def _run_coroutine(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run an async backend to completion on a worker thread (for the sync ``call``)."""
    return asyncio.run(fn(*args, **kwargs))


def _sync_probe(probe: Callable[[], Any]) -> Callable[[], object]:
    """A probe the prober thread can call: async probes run in their own event loop."""
    if inspect.iscoroutinefunction(probe):

        def run() -> object:
            return asyncio.run(probe())

        return run
    return probe


def _minimal_call(backend: Backend, args: tuple[Any, ...]) -> Callable[[], object]:
    """A probe that calls the backend itself with ``args`` (drained, if it streams)."""

    def call() -> object:
        result = backend.fn(*args)
        if inspect.isawaitable(result):
            return asyncio.run(_awaited(result))
        if hasattr(result, "__aiter__"):
            return asyncio.run(_drained(result))
        return result

    return call


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


async def _drained(stream: Any) -> None:
    async for _ in stream:
        pass


class _Walk:
    """What one call has done so far (the plan's bookkeeping)."""

    __slots__ = ("attempts", "first_passed", "last_exc", "last_kind", "number", "passed", "started")

    def __init__(self, started: float) -> None:
        self.attempts: list[Attempt] = []
        self.last_exc: BaseException | None = None
        self.last_kind: dict[int, str] = {}
        self.passed: tuple[Member, str] | None = None  # the last backend passed over
        self.first_passed: tuple[Member, str] | None = None
        self.number = 0
        self.started = started  # clock time the call began

    def pass_over(self, m: Member, reason: str) -> None:
        self.passed = (m, reason)
        if self.first_passed is None:
            self.first_passed = self.passed


class Router:
    """Routes calls over ordered backends with breakers, deadlines, failover and retries.

    >>> router = Router("summarize", [
    ...     Backend(call_bart, model="facebook/bart-large-cnn", provider="huggingface"),
    ...     Backend(call_flan, model="google/flan-t5-large", provider="huggingface"),
    ... ], timeout_s=30.0, attempt_timeout_s=25.0)                       # doctest: +SKIP
    >>> router.call(document)                                            # doctest: +SKIP

    Args:
        name: names the ``route {name}`` span and labels every metric.
        backends: primary first, then the backups.
        breaker: the policy for every backend's breaker.
        retry: failover and retry policy.
        timeout_s: whole-call deadline (``None``: none).
        attempt_timeout_s: cap per attempt (``Backend(timeout_s=...)`` overrides).
        first_chunk_timeout_s: streams: cap on the time to the first chunk (default: the
            attempt timeout).
        idle_timeout_s: streams: cap on the wait for each later chunk (default: the
            attempt timeout).
        ordering: an :class:`~modelwatch.resilience.Ordering` (default: priority).
        classify: a :class:`~modelwatch.resilience.Classifier` (default:
            :func:`modelwatch.classify`).
        isolate_sync: run sync attempts on a bounded worker pool so a backend that hangs is
            abandoned at its timeout (default). ``False`` runs them on the caller's thread:
            less overhead, but then only the client's own timeouts bound a hung call.
        probe_args: while a backend's breaker is open, probe it in the background by calling
            it with these arguments (a minimal request, e.g. ``("ping",)``); a backend's own
            ``probe`` takes precedence. Without either, recovery is found by the half-open
            trial of a user call once the open time ends.
        clock: time source (tests inject a manual clock).
        pool: one worker pool for every backend's sync attempts (default: each backend gets
            its own, started on demand, so a hung backend cannot starve the others).
        max_workers: the bound of each backend's own pool.
    """

    def __init__(
        self,
        name: str,
        backends: Sequence[Backend],
        *,
        breaker: BreakerPolicy | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float | None = 30.0,
        attempt_timeout_s: float | None = 25.0,
        first_chunk_timeout_s: float | None = None,
        idle_timeout_s: float | None = None,
        ordering: Ordering | None = None,
        classify: Classifier | None = None,
        isolate_sync: bool = True,
        probe_args: tuple[Any, ...] | None = None,
        clock: Clock | None = None,
        pool: WorkerPool | None = None,
        max_workers: int = 32,
    ) -> None:
        backends = _validated(name, backends)
        if probe_args is not None and not isinstance(probe_args, tuple):
            raise ConfigurationError(f"Router probe_args must be a tuple, got {probe_args!r}")
        for key, value in (
            ("timeout_s", timeout_s),
            ("attempt_timeout_s", attempt_timeout_s),
            ("first_chunk_timeout_s", first_chunk_timeout_s),
            ("idle_timeout_s", idle_timeout_s),
        ):
            if value is not None and not value > 0:
                raise ConfigurationError(f"Router {key} must be > 0 or None, got {value!r}")
        self.name = name
        self.breaker_policy = breaker if breaker is not None else BreakerPolicy()
        self.retry_policy = retry if retry is not None else RetryPolicy()
        self.timeout_s = timeout_s
        self.attempt_timeout_s = attempt_timeout_s
        self.first_chunk_timeout_s = first_chunk_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self._ordering: Ordering = ordering if ordering is not None else Priority()
        self._priority = isinstance(self._ordering, Priority)
        self._classify: Classifier = classify if classify is not None else default_classify
        self._isolate = isolate_sync
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self._pool = pool
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigurationError(f"Router max_workers must be an int >= 1, got {max_workers!r}")
        self._max_workers = max_workers
        self._budget = RetryBudget(self.retry_policy, self._clock)
        self._span_attributes = {semconv.MODELWATCH_ROUTER: name}
        self._span_name = semconv.route_span_name(name)
        self._members = [
            Member(
                i,
                b,
                Breaker(
                    f"{name}/{b.name}",
                    self.breaker_policy,
                    router=name,
                    model=b.model,
                    clock=self._clock,
                ),
                name,
            )
            for i, b in enumerate(backends)
        ]
        for m in self._members:
            if m.backend.probe is not None:
                m.breaker.set_probe(_sync_probe(m.backend.probe))
            elif probe_args is not None:
                m.breaker.set_probe(_minimal_call(m.backend, probe_args))
        self._canary = canary_for(name, self._members, self._clock)  # None: no canary
        _routers.add(self)

    # ------------------------------------------------------------------ introspection
    @property
    def backends(self) -> tuple[Backend, ...]:
        """The backends, in priority order."""
        return tuple(m.backend for m in self._members)

    def breaker(self, backend: str) -> Breaker:
        """The breaker of the backend named (or with model) ``backend``."""
        for m in self._members:
            if backend in (m.backend.name, m.backend.model):
                return m.breaker
        raise KeyError(backend)

    def status(self) -> list[BackendStatus]:
        """Each backend's state, from memory (no I/O, no locks held for long)."""
        now = self._clock.monotonic()
        out = []
        for m in self._members:
            b = m.breaker
            retry_after = b.retry_after_s
            if m.benched_until > now:
                retry_after = max(retry_after or 0.0, m.benched_until - now)
            out.append(
                BackendStatus(
                    name=m.backend.name,
                    model=m.backend.model,
                    provider=m.backend.provider,
                    state=b.state,
                    retry_after_s=retry_after,
                    last_error=b.last_error_kind,
                    last_error_at=b.last_error_at,
                    error_rate=b.error_rate,
                    latency_s=b.latency_ewma_s,
                    rate_limit_remaining=_current_rate_limits(m),
                )
            )
        return out

    def promote(self, backend: str) -> None:
        """Promote the canary ``backend`` now: it serves every call (see :class:`Canary`)."""
        self._canary_named(backend).promote()

    def rollback(self, backend: str) -> None:
        """Roll the canary ``backend`` back now: it serves no call until its cooldown ends."""
        self._canary_named(backend).rollback()

    def canary_status(self) -> CanaryStatus | None:
        """The canary's state, weight and sample sizes (``None``: no canary)."""
        return None if self._canary is None else self._canary.status()

    def _canary_named(self, backend: str) -> Any:
        c = self._canary
        if c is None or backend not in (c.candidate.backend.name, c.candidate.backend.version):
            raise KeyError(f"router {self.name!r} has no canary {backend!r}")
        return c

    # ------------------------------------------------------------------ the policy
    def _plan(self, span: Span, deadline: Deadline, stream: bool = False) -> Plan:
        """Decide attempts, failovers and retries; the drivers run what it yields.

        Yields a :class:`Req` (run this attempt; send back its :data:`Outcome`) or a float
        (sleep that long). Returns the result; raises the surfaced exception or
        :class:`AllBackendsFailedError`. For streams it returns ``(value, member, permit)``
        at the first chunk and leaves the breaker outcome to the stream driver.
        """
        members = self._members if self._priority else list(self._ordering(self._members))
        if self._canary is not None:  # the candidate serves its share, and only that
            members = self._canary.order(members)
        queue: Sequence[Member] = members
        walk = _Walk(self._clock.monotonic())
        retries = 0
        while True:
            for m in queue:
                if deadline.remaining() <= 0:
                    break
                permit = self._admit(span, m, walk)
                if permit is None:
                    continue
                walk.number += 1
                if walk.passed is not None:
                    _events.failover(self.name, span, walk.passed, m)
                timeout = self.attempt_timeout_s
                if m.backend.timeout_s is not None:
                    timeout = m.backend.timeout_s
                attempt_started = self._clock.monotonic()
                outcome = yield Req(m, permit, walk.number, deadline.cap(timeout))
                assert outcome is not None
                ok, value, duration = outcome
                if self._canary is not None:
                    self._canary.observe(
                        m, ok, value, duration, None if ok else self._kind_of(value)
                    )
                if ok:
                    if walk.first_passed is not None:  # what failing over cost this call
                        _events.failover_duration(
                            self.name, walk.first_passed, m, attempt_started - walk.started
                        )
                    if stream:
                        return value, m, permit
                    m.breaker.record_success(permit, duration)
                    return value
                self._failed(span, m, permit, value, duration=duration, walk=walk)
            # nobody could take the call: one more chance, or give up
            chance = self._next_chance(members, walk, retries, deadline)
            if chance is None:
                raise self._give_up(span, members, walk)
            member, wait = chance
            retries += 1
            reason = walk.last_kind.get(member.index, REASON_CIRCUIT_OPEN)
            _events.retry(span, member, walk.number + 1, wait, reason)
            if wait > 0:
                yield wait
            queue = (member,)
            walk.passed = None

    def _admit(self, span: Span, m: Member, walk: _Walk) -> Permit | None:
        """The backend's permit, or ``None`` (recorded as a rejection) if it cannot take it."""
        benched = m.benched_until - self._clock.monotonic() if m.benched_until else 0.0
        if benched <= 0.0:
            permit = m.breaker.admit()
            if permit is not None:
                return permit
            reason, wait = REASON_CIRCUIT_OPEN, m.breaker.retry_after_s
        else:  # benched after a 429: its breaker is not even asked (no trial slot taken)
            reason, wait = REASON_BENCHED, benched
        rejected = _events.rejected(span, m, reason, wait)
        walk.attempts.append(Attempt(m.backend.model, reason, rejected, 0.0))
        if walk.last_exc is None or isinstance(walk.last_exc, CircuitOpenError):
            walk.last_exc = rejected
        walk.pass_over(m, reason)
        return None

    def _failed(
        self,
        span: Span,
        m: Member,
        permit: Permit,
        exc: BaseException,
        *,
        duration: float,
        walk: _Walk,
    ) -> None:
        """Learn from a failed attempt; raise if the error must surface instead of failing
        over (cancellation, bad requests, unclassified errors)."""
        kind = self._kind_of(exc)
        if not isinstance(exc, Exception) or kind == semconv.ERROR_CANCELLED:
            m.breaker.release(permit)
            raise exc
        m.breaker.record_failure(permit, kind, duration)
        _events.note_headers(m, exc)
        walk.attempts.append(Attempt(m.backend.model, kind, exc, duration))
        walk.last_exc = exc
        walk.last_kind[m.index] = kind
        if kind not in _FAILOVER_KINDS and not (
            kind == semconv.ERROR_OTHER and self.retry_policy.failover_on_other
        ):
            with guard("router.error_type"):
                span.set_attribute(semconv.ERROR_TYPE, kind)
            raise exc
        if kind == semconv.ERROR_RATE_LIMITED:
            bench = retry_after_s(exc)
            bench = DEFAULT_BENCH_S if bench is None else bench
            m.benched_until = self._clock.monotonic() + min(bench, MAX_BENCH_S)
        walk.pass_over(m, kind)

    def _kind_of(self, exc: BaseException) -> str:
        if isinstance(exc, AttemptTimeoutError):
            return semconv.ERROR_TIMEOUT
        try:
            return self._classify(exc)
        except Exception as internal:
            report_internal_error("router.classify", internal)
            return semconv.ERROR_OTHER

    def _availability(self, m: Member, kind: str | None, retries: int) -> float | None:
        """Seconds until ``m`` could take this call again (``None``: not for this call)."""
        policy = self.retry_policy
        if kind is not None and kind not in policy.retry_kinds:
            return None  # auth, not_found...: retrying cannot help
        now = self._clock.monotonic()
        if m.benched_until > now:
            return m.benched_until - now
        after = m.breaker.retry_after_s
        if after is not None:
            return after
        if kind is None:  # never tried: its half-open trial slot was busy
            return policy.backoff_s
        return float(policy.backoff_s * 2.0**retries)

    def _next_chance(
        self, members: Sequence[Member], walk: _Walk, retries: int, deadline: Deadline
    ) -> tuple[Member, float] | None:
        """The backend to retry and the wait before it, if a retry is allowed now."""
        policy = self.retry_policy
        if retries >= policy.max_retries:
            return None
        best: tuple[Member, float] | None = None
        for m in members:
            wait = self._availability(m, walk.last_kind.get(m.index), retries)
            if wait is not None and (best is None or wait < best[1]):
                best = (m, wait)
        if best is None:
            return None
        _, wait = best
        if wait > policy.max_wait_s or wait >= deadline.remaining():
            return None
        if not self._budget.withdraw():
            return None
        return best

    def _give_up(
        self, span: Span, members: Sequence[Member], walk: _Walk
    ) -> AllBackendsFailedError:
        waits = [
            w
            for m in members
            if (w := self._availability(m, walk.last_kind.get(m.index), 0)) is not None
        ]
        attempts = walk.attempts
        last_exc = walk.last_exc
        if last_exc is None:  # the deadline ran out before any attempt
            last_exc = AttemptTimeoutError(f"router {self.name!r}", self.timeout_s or 0.0)
            attempts.append(Attempt("", semconv.ERROR_TIMEOUT, last_exc, 0.0))
        error = AllBackendsFailedError(self.name, attempts, min(waits) if waits else None)
        error.__cause__ = last_exc
        with guard("router.give_up"):
            kind = attempts[-1].error_kind
            if kind not in semconv.ERROR_KINDS:
                kind = semconv.ERROR_UNAVAILABLE
            span.set_attribute(semconv.ERROR_TYPE, kind)
        return error

    def close(self) -> None:
        """Release the router's threads: its backends' worker pools let their workers go
        (busy ones when their attempt ends) and its breakers stop background probing.

        Idle workers also leave by themselves after 30 s; call this when a router is
        discarded in a long-lived process. Calls made afterwards still work.
        """
        for m in self._members:
            if m.pool is not None:
                m.pool.close()
            m.breaker.set_probe(None)

    # ------------------------------------------------------------------ shared by drivers
    def _pool_for(self, m: Member) -> WorkerPool:
        """The backend's own bounded pool (a bulkhead: a hung backend can tie up its own
        threads only, never the backups'), unless the router was given one ``pool``."""
        pool = self._pool or m.pool
        if pool is None:
            pool = m.pool = WorkerPool(
                self._max_workers, name=f"modelwatch-{self.name}-{m.backend.name}"
            )
        return pool

    def _start_span(self) -> Span:
        return telemetry().tracer.start_span(
            self._span_name, kind=SpanKind.INTERNAL, attributes=self._span_attributes
        )

    def _finish_call(self, call: Call, m: Member, result: Any) -> None:
        try:
            call._usage_from_result(result)
        except Exception as exc:  # a try, not guard(): this runs on every call
            report_internal_error("router.usage", exc)
        call._end()
        if getattr(result, "headers", None) is not None:
            _events.note_headers(m, result)

    # ------------------------------------------------------------------ sync driver
    def call(self, *args: Any, **kwargs: Any) -> Any:
        """Call the first backend that can take the call; fail over on errors.

        Returns the backend's result unchanged. Raises the backend's own exception for a
        ``bad_request`` (or unclassified) error, :class:`~modelwatch.AllBackendsFailedError`
        when no backend succeeded within the deadline.
        """
        self._budget.deposit()
        deadline = Deadline(self._clock, self.timeout_s)
        span = self._start_span()
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            plan = self._plan(span, deadline)
            request = next(plan)
            while True:
                if isinstance(request, Req):
                    outcome: Outcome | None = self._attempt(request, args, kwargs)
                else:
                    self._clock.sleep(request)
                    outcome = None
                try:
                    request = plan.send(outcome)
                except StopIteration as done:
                    return done.value
        except BaseException as exc:
            _error_on_span(span, exc)
            raise
        finally:
            _detach(token)
            span.end()

    def _attempt(self, req: Req, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome:
        m = req.member
        call = start_call(m.spec_for(req.number))
        fn = m.backend.fn
        start = time.perf_counter()
        try:
            if m.backend.is_async:
                result = self._pool_for(m).run(
                    _run_coroutine, (fn, *args), kwargs, req.timeout_s, m.what
                )
            elif self._isolate:
                result = self._pool_for(m).run(fn, args, kwargs, req.timeout_s, m.what)
            else:
                result = fn(*args, **kwargs)
        except BaseException as exc:
            duration = time.perf_counter() - start
            call._detach()
            call._end(exc)
            return False, exc, duration
        duration = time.perf_counter() - start
        call._detach()
        self._finish_call(call, m, result)
        return True, result, duration

    # ------------------------------------------------------------------ async driver
    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """The ``async`` twin of :meth:`call`: coroutine backends are awaited (and cancelled
        at their timeout); sync backends run on the worker pool."""
        self._budget.deposit()
        deadline = Deadline(self._clock, self.timeout_s)
        span = self._start_span()
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            plan = self._plan(span, deadline)
            request = next(plan)
            while True:
                if isinstance(request, Req):
                    outcome: Outcome | None = await self._aattempt(request, args, kwargs)
                else:
                    await self._clock.asleep(request)
                    outcome = None
                try:
                    request = plan.send(outcome)
                except StopIteration as done:
                    return done.value
        except BaseException as exc:
            _error_on_span(span, exc)
            raise
        finally:
            _detach(token)
            span.end()

    async def _aattempt(self, req: Req, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome:
        m = req.member
        call = start_call(m.spec_for(req.number))
        fn = m.backend.fn
        start = time.perf_counter()
        try:
            if m.backend.is_async:
                result = await await_within(fn(*args, **kwargs), req.timeout_s, m.what)
            else:
                future = self._pool_for(m).submit(fn, args, kwargs)
                try:
                    result = await await_within(asyncio.wrap_future(future), req.timeout_s, m.what)
                finally:
                    future.cancel()  # no-op once it ran; never starts if still queued
        except BaseException as exc:
            duration = time.perf_counter() - start
            call._detach()
            call._end(exc)
            return False, exc, duration
        duration = time.perf_counter() - start
        call._detach()
        self._finish_call(call, m, result)
        return True, result, duration

    # ------------------------------------------------------------------ streams
    def stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Stream chunks from the first backend that produces one.

        Fails over (like :meth:`call`) until a backend delivers its first chunk within
        ``first_chunk_timeout_s``; after that the stream is committed to that backend, each
        later chunk must come within ``idle_timeout_s``, and a break raises
        :class:`~modelwatch.StreamInterruptedError` (chained to the backend error).
        """
        return _streaming.stream(self, args, kwargs)

    def astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """The ``async`` twin of :meth:`stream` (``async for chunk in router.astream(x)``)."""
        return _streaming.astream(self, args, kwargs)

    def __repr__(self) -> str:
        return f"Router({self.name!r}, {[m.backend.model for m in self._members]})"


def _error_on_span(span: Span, exc: BaseException) -> None:
    """What ``start_as_current_span`` would do on an exception, without its overhead."""
    with guard("router.span_error"):
        if span.is_recording():
            record_exception(span, exc)  # scrubbed message, status and stack trace


def _detach(token: object) -> None:
    try:
        otel_context.detach(token)  # type: ignore[arg-type]
    except Exception as exc:
        report_internal_error("router.detach", exc)


def _validated(name: str, backends: Sequence[Backend]) -> list[Backend]:
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"Router name must be a non-empty str, got {name!r}")
    backends = list(backends)
    if not backends:
        raise ConfigurationError(f"Router {name!r} needs at least one backend")
    for b in backends:
        if not isinstance(b, Backend):
            raise ConfigurationError(f"Router {name!r}: {b!r} is not a Backend")
    names = [b.name for b in backends]
    if len(set(names)) != len(names):
        raise ConfigurationError(
            f"Router {name!r}: backend names must be unique, got {names}; "
            "pass Backend(name=...) to tell two backends of one model apart"
        )
    return backends
