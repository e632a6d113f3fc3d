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
share it, so the twins cannot drift apart.

Telemetry: a ``route {router}`` INTERNAL span per call, one child model span per attempt
(from :mod:`modelwatch.capture`, with ``modelwatch.router`` and ``modelwatch.attempt``),
span events for failover, retry and rejection, and the ``modelwatch.failovers``,
``modelwatch.failover.duration`` and ``modelwatch.rate_limit.remaining`` metrics.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
import weakref
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from modelwatch import semconv
from modelwatch._safety import guard, report_internal_error
from modelwatch.capture._telemetry import Attributes, register_observable, telemetry
from modelwatch.capture.call import Call, start_call
from modelwatch.capture.monitored import monitored
from modelwatch.errors import (
    AllBackendsFailedError,
    Attempt,
    CircuitOpenError,
    ConfigurationError,
    StreamInterruptedError,
)
from modelwatch.resilience._budget import RetryBudget
from modelwatch.resilience._clock import SYSTEM_CLOCK, Clock
from modelwatch.resilience._kinds import (
    Classifier,
    default_classify,
    rate_limit_ratios,
    response_headers,
    retry_after_s,
)
from modelwatch.resilience.breaker import Breaker, Permit
from modelwatch.resilience.deadline import (
    AttemptTimeoutError,
    Deadline,
    WorkerPool,
    await_within,
    shared_pool,
)
from modelwatch.resilience.ordering import Ordering, Priority
from modelwatch.resilience.policy import BreakerPolicy, RetryPolicy

__all__ = ["Backend", "BackendStatus", "Router"]

#: How long a 429 without ``Retry-After`` benches a backend.
DEFAULT_BENCH_S: Final = 1.0
#: A ``Retry-After`` longer than this is treated as this (a bogus header cannot bench forever).
MAX_BENCH_S: Final = 3600.0
#: Reasons of failovers and rejections that are not error kinds.
REASON_CIRCUIT_OPEN: Final = "circuit_open"
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
_DONE: Final = object()  # a stream ended


class Backend:
    """One model behind a router: a callable plus what it is.

    ``fn`` is called with the router call's arguments: a function, an ``async def``, or
    (for :meth:`Router.stream`/:meth:`Router.astream`) anything returning an iterable or
    async iterable of chunks. ``timeout_s`` overrides the router's ``attempt_timeout_s``.
    ``probe`` (no arguments, sync or async) checks recovery in the background while the
    backend's breaker is open. ``weight`` is used by :class:`~modelwatch.resilience.Weighted`.
    ``name`` defaults to ``model`` and must be unique in a router.

    >>> Backend(lambda text: text[:10], model="facebook/bart-large-cnn", provider="huggingface")
    Backend(model='facebook/bart-large-cnn', provider='huggingface')
    """

    __slots__ = (
        "analysis",
        "fn",
        "is_async",
        "model",
        "name",
        "operation",
        "probe",
        "provider",
        "server_address",
        "timeout_s",
        "usage",
        "weight",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        model: str,
        provider: str,
        operation: str = semconv.OPERATION_CHAT,
        analysis: str | None = None,
        server_address: str | None = None,
        timeout_s: float | None = None,
        probe: Callable[[], Any] | None = None,
        weight: float = 1.0,
        name: str | None = None,
        usage: Callable[[Any], Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError(f"Backend fn must be callable, got {fn!r}")
        for key, value in (("model", model), ("provider", provider), ("operation", operation)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError(f"Backend {key} must be a non-empty str, got {value!r}")
        if timeout_s is not None and not timeout_s > 0:
            raise ConfigurationError(f"Backend timeout_s must be > 0 or None, got {timeout_s!r}")
        if probe is not None and not callable(probe):
            raise ConfigurationError(f"Backend probe must be callable or None, got {probe!r}")
        if not weight > 0:
            raise ConfigurationError(f"Backend weight must be > 0, got {weight!r}")
        self.fn = fn
        self.model = model
        self.provider = provider
        self.operation = operation
        self.analysis = analysis
        self.server_address = server_address
        self.timeout_s = timeout_s
        self.probe = probe
        self.weight = weight
        self.name = name if name is not None else model
        self.usage = usage
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)

    def __repr__(self) -> str:
        return f"Backend(model={self.model!r}, provider={self.provider!r})"


@dataclass(frozen=True)
class BackendStatus:
    """A backend as its router sees it now, answered from memory.

    ``state`` is the breaker's (``"closed"``, ``"half_open"``, ``"open"``);
    ``retry_after_s`` is when it takes calls again (open breaker or rate-limit bench),
    ``last_error`` the kind of its last failure and ``last_error_at`` when (epoch seconds),
    ``error_rate`` the failure share in the breaker window, ``latency_s`` the moving
    average of successful calls, ``rate_limit_remaining`` the last ``remaining/limit`` seen
    per resource.
    """

    name: str
    model: str
    provider: str
    state: str
    retry_after_s: float | None
    last_error: str | None
    last_error_at: float | None
    error_rate: float | None
    latency_s: float | None
    rate_limit_remaining: dict[str, float] = field(default_factory=dict)


class _Member:
    """A backend with its breaker and precomputed telemetry (a :class:`Candidate`)."""

    __slots__ = ("backend", "benched_until", "breaker", "index", "rate_limits", "spec", "what")

    def __init__(self, index: int, backend: Backend, breaker: Breaker, router: str) -> None:
        self.index = index
        self.backend = backend
        self.breaker = breaker
        self.spec = monitored(
            model=backend.model,
            provider=backend.provider,
            operation=backend.operation,
            analysis=backend.analysis,
            server_address=backend.server_address,
            usage=backend.usage,
            router=router,
        )._spec
        self.benched_until = 0.0
        self.rate_limits: dict[str, float] = {}
        self.what = f"attempt on {backend.model!r}"

    @property
    def latency_s(self) -> float | None:
        return self.breaker.latency_ewma_s


class _Req:
    """The plan asks its driver to run one attempt."""

    __slots__ = ("member", "number", "permit", "timeout_s")

    def __init__(self, member: _Member, permit: Permit, number: int, timeout_s: float) -> None:
        self.member = member
        self.permit = permit
        self.number = number
        self.timeout_s = timeout_s


# An attempt's outcome as the driver reports it: (succeeded, result or exception, seconds)
Outcome = tuple[bool, Any, float]
Plan = Generator["_Req | float", "Outcome | None", Any]

_routers: weakref.WeakSet[Router] = weakref.WeakSet()


def _observe_rate_limits() -> Iterable[tuple[float, Attributes]]:
    for router in list(_routers):
        for m in router._members:
            for resource, ratio in list(m.rate_limits.items()):
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


def _open_stream(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    iterator = iter(fn(*args, **kwargs))
    return iterator, next(iterator, _DONE)


def _next_chunk(iterator: Iterator[Any]) -> Any:
    return next(iterator, _DONE)


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
        clock: time source (tests inject a manual clock).
        pool: the worker pool for sync attempts (default: one shared by all routers).
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
        clock: Clock | None = None,
        pool: WorkerPool | None = None,
    ) -> None:
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
        self._budget = RetryBudget(self.retry_policy, self._clock)
        self._span_attributes = {semconv.MODELWATCH_ROUTER: name}
        self._span_name = semconv.route_span_name(name)
        self._members = [
            _Member(
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
                    rate_limit_remaining=dict(m.rate_limits),
                )
            )
        return out

    # ------------------------------------------------------------------ the policy
    def _plan(self, span: Span, deadline: Deadline, stream: bool = False) -> Plan:
        """Decide attempts, failovers and retries; the drivers run what it yields.

        Yields a :class:`_Req` (run this attempt; send back its :data:`Outcome`) or a float
        (sleep that long). Returns the result; raises the surfaced exception or
        :class:`AllBackendsFailedError`. For streams it returns ``(value, member, permit)``
        at the first chunk and leaves the breaker outcome to the stream driver.
        """
        members = self._members if self._priority else list(self._ordering(self._members))
        queue: Sequence[_Member] = members
        attempts: list[Attempt] = []
        last_exc: BaseException | None = None
        last_kind: dict[int, str] = {}
        passed: tuple[_Member, str] | None = None  # the last backend passed over
        first_passed: tuple[_Member, str] | None = None
        started = time.perf_counter()
        number = retries = 0
        while True:
            for m in queue:
                if deadline.remaining() <= 0:
                    break
                breaker = m.breaker
                permit = breaker.admit()
                if permit is None or m.benched_until > self._clock.monotonic():
                    if permit is not None:
                        breaker.release(permit)
                    reason = REASON_BENCHED if permit is not None else REASON_CIRCUIT_OPEN
                    rejected = self._reject(span, m, reason)
                    attempts.append(Attempt(m.backend.model, reason, rejected, 0.0))
                    if last_exc is None or isinstance(last_exc, CircuitOpenError):
                        last_exc = rejected
                    passed = (m, reason)
                    first_passed = first_passed or passed
                    continue
                number += 1
                if passed is not None:
                    self._failover(span, passed, m)
                timeout = self.attempt_timeout_s
                if m.backend.timeout_s is not None:
                    timeout = m.backend.timeout_s
                outcome = yield _Req(m, permit, number, deadline.cap(timeout))
                assert outcome is not None
                ok, value, duration = outcome
                if ok:
                    if first_passed is not None:
                        self._failover_duration(first_passed, m, started)
                    if stream:
                        return value, m, permit
                    breaker.record_success(permit, duration)
                    return value
                exc: BaseException = value
                kind = self._kind_of(exc)
                if not isinstance(exc, Exception) or kind == semconv.ERROR_CANCELLED:
                    breaker.release(permit)
                    raise exc
                breaker.record_failure(permit, kind, duration)
                self._note_headers(m, exc)
                attempts.append(Attempt(m.backend.model, kind, exc, duration))
                last_exc, last_kind[m.index] = exc, kind
                if kind not in _FAILOVER_KINDS and not (
                    kind == semconv.ERROR_OTHER and self.retry_policy.failover_on_other
                ):
                    span.set_attribute(semconv.ERROR_TYPE, kind)
                    raise exc
                if kind == semconv.ERROR_RATE_LIMITED:
                    bench = retry_after_s(exc)
                    bench = DEFAULT_BENCH_S if bench is None else bench
                    m.benched_until = self._clock.monotonic() + min(bench, MAX_BENCH_S)
                passed = (m, kind)
                first_passed = first_passed or passed
            # nobody could take the call: one more chance, or give up
            chance = self._next_chance(members, last_kind, attempts, retries, deadline)
            if chance is None:
                raise self._give_up(span, members, last_kind, attempts, last_exc, deadline)
            member, wait = chance
            retries += 1
            with guard("router.retry_event"):
                if span.is_recording():
                    span.add_event(
                        semconv.EVENT_RETRY,
                        {
                            semconv.GEN_AI_REQUEST_MODEL: member.backend.model,
                            semconv.MODELWATCH_ATTEMPT: number + 1,
                            "modelwatch.wait_s": wait,
                            semconv.REASON: last_kind.get(member.index, REASON_CIRCUIT_OPEN),
                        },
                    )
            if wait > 0:
                yield wait
            queue = (member,)
            passed = None

    def _kind_of(self, exc: BaseException) -> str:
        if isinstance(exc, AttemptTimeoutError):
            return semconv.ERROR_TIMEOUT
        try:
            return self._classify(exc)
        except Exception as internal:
            report_internal_error("router.classify", internal)
            return semconv.ERROR_OTHER

    def _availability(self, m: _Member, kind: str | None, retries: int) -> float | None:
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
        self,
        members: Sequence[_Member],
        last_kind: dict[int, str],
        attempts: list[Attempt],
        retries: int,
        deadline: Deadline,
    ) -> tuple[_Member, float] | None:
        """The backend to retry and the wait before it, if a retry is allowed now."""
        policy = self.retry_policy
        if retries >= policy.max_retries:
            return None
        best: tuple[_Member, float] | None = None
        for m in members:
            wait = self._availability(m, last_kind.get(m.index), retries)
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
        self,
        span: Span,
        members: Sequence[_Member],
        last_kind: dict[int, str],
        attempts: list[Attempt],
        last_exc: BaseException | None,
        deadline: Deadline,
    ) -> AllBackendsFailedError:
        waits = [
            w
            for m in members
            if (w := self._availability(m, last_kind.get(m.index), 0)) is not None
        ]
        if last_exc is None:  # the deadline ran out before any attempt
            last_exc = AttemptTimeoutError(f"router {self.name!r}", self.timeout_s or 0.0)
            attempts.append(Attempt("", semconv.ERROR_TIMEOUT, last_exc, 0.0))
        error = AllBackendsFailedError(self.name, attempts, min(waits) if waits else None)
        error.__cause__ = last_exc
        with guard("router.give_up"):
            kind = attempts[-1].error_kind if attempts else semconv.ERROR_UNAVAILABLE
            span.set_attribute(
                semconv.ERROR_TYPE,
                kind if kind in semconv.ERROR_KINDS else semconv.ERROR_UNAVAILABLE,
            )
        return error

    # ------------------------------------------------------------------ telemetry helpers
    def _reject(self, span: Span, m: _Member, reason: str) -> CircuitOpenError:
        b = m.breaker
        retry = b.retry_after_s
        if reason == REASON_BENCHED:
            retry = max(0.0, m.benched_until - self._clock.monotonic())
        with guard("router.reject_event"):
            if span.is_recording():
                span.add_event(
                    semconv.EVENT_REJECTED,
                    {
                        semconv.GEN_AI_REQUEST_MODEL: m.backend.model,
                        semconv.MODELWATCH_CIRCUIT: b.name,
                        semconv.REASON: reason,
                        "modelwatch.retry_after_s": retry or 0.0,
                    },
                )
        return CircuitOpenError(b.name, retry)

    def _failover(self, span: Span, passed: tuple[_Member, str], to: _Member) -> None:
        with guard("router.failover"):
            attrs = {
                semconv.MODELWATCH_ROUTER: self.name,
                semconv.FROM: passed[0].backend.model,
                semconv.TO: to.backend.model,
                semconv.REASON: passed[1],
            }
            telemetry().instrument(semconv.FAILOVERS).add(1, attrs)
            if span.is_recording():
                span.add_event(semconv.EVENT_FAILOVER, attrs)

    def _failover_duration(self, first: tuple[_Member, str], to: _Member, started: float) -> None:
        with guard("router.failover_duration"):
            telemetry().instrument(semconv.FAILOVER_DURATION).record(
                time.perf_counter() - started,
                {
                    semconv.MODELWATCH_ROUTER: self.name,
                    semconv.FROM: first[0].backend.model,
                    semconv.TO: to.backend.model,
                    semconv.REASON: first[1],
                },
            )

    def _note_headers(self, m: _Member, source: Any) -> None:
        """Feed ``x-ratelimit-*`` headers of a result or error into the gauge."""
        try:
            headers = response_headers(source)
            if headers:
                ratios = rate_limit_ratios(headers)
                if ratios:
                    m.rate_limits.update(ratios)
        except Exception as exc:
            report_internal_error("router.rate_limit", exc)

    def _pool_(self) -> WorkerPool:
        pool = self._pool
        if pool is None:
            pool = self._pool = shared_pool()
        return pool

    def _start_span(self) -> Span:
        return telemetry().tracer.start_span(
            self._span_name, kind=SpanKind.INTERNAL, attributes=self._span_attributes
        )

    # ------------------------------------------------------------------ sync driver
    def call(self, *args: Any, **kwargs: Any) -> Any:
        """Call the first backend that can take the call; fail over on errors.

        Returns the backend's result unchanged. Raises the backend's own exception for a
        ``bad_request`` (or unclassified) error, :class:`~modelwatch.AllBackendsFailedError`
        when no backend succeeded within the deadline.
        """
        self._budget.deposit()
        deadline = Deadline(self._clock, self.timeout_s)
        with telemetry().tracer.start_as_current_span(
            self._span_name, kind=SpanKind.INTERNAL, attributes=self._span_attributes
        ) as span:
            plan = self._plan(span, deadline)
            request = next(plan)
            while True:
                if isinstance(request, _Req):
                    outcome: Outcome | None = self._attempt(request, args, kwargs)
                else:
                    self._clock.sleep(request)
                    outcome = None
                try:
                    request = plan.send(outcome)
                except StopIteration as done:
                    return done.value

    def _attempt(self, req: _Req, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome:
        m = req.member
        call = start_call(m.spec)
        call.set_attribute(semconv.MODELWATCH_ATTEMPT, req.number)
        fn = m.backend.fn
        start = time.perf_counter()
        try:
            if m.backend.is_async:
                result = self._pool_().run(
                    _run_coroutine, (fn, *args), kwargs, req.timeout_s, m.what
                )
            elif self._isolate:
                result = self._pool_().run(fn, args, kwargs, req.timeout_s, m.what)
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

    def _finish_call(self, call: Call, m: _Member, result: Any) -> None:
        with guard("router.usage"):
            call._usage_from_result(result)
        call._end()
        if getattr(result, "headers", None) is not None:
            self._note_headers(m, result)

    # ------------------------------------------------------------------ async driver
    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """The ``async`` twin of :meth:`call`: coroutine backends are awaited (and cancelled
        at their timeout); sync backends run on the worker pool."""
        self._budget.deposit()
        deadline = Deadline(self._clock, self.timeout_s)
        with telemetry().tracer.start_as_current_span(
            self._span_name, kind=SpanKind.INTERNAL, attributes=self._span_attributes
        ) as span:
            plan = self._plan(span, deadline)
            request = next(plan)
            while True:
                if isinstance(request, _Req):
                    outcome: Outcome | None = await self._aattempt(request, args, kwargs)
                else:
                    await self._clock.asleep(request)
                    outcome = None
                try:
                    request = plan.send(outcome)
                except StopIteration as done:
                    return done.value

    async def _aattempt(self, req: _Req, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome:
        m = req.member
        call = start_call(m.spec)
        call.set_attribute(semconv.MODELWATCH_ATTEMPT, req.number)
        fn = m.backend.fn
        start = time.perf_counter()
        try:
            if m.backend.is_async:
                result = await await_within(fn(*args, **kwargs), req.timeout_s, m.what)
            else:
                future = self._pool_().submit(fn, args, kwargs)
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
        return self._stream(args, kwargs)

    def _stream(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Any]:
        self._budget.deposit()
        deadline = Deadline(self._clock, self.timeout_s)
        span = self._start_span()
        try:
            with trace.use_span(span, end_on_exit=False):
                plan = self._plan(span, deadline, stream=True)
                request = next(plan)
                while True:
                    if isinstance(request, _Req):
                        outcome = self._open(request, args, kwargs)
                    else:
                        self._clock.sleep(request)
                        outcome = None
                    try:
                        request = plan.send(outcome)
                    except StopIteration as done:
                        (iterator, first, call), m, permit = done.value
                        break
        except BaseException as exc:
            _end_route_span(span, exc)
            raise
        idle = self.idle_timeout_s or self.attempt_timeout_s or math.inf
        chunks = 0
        start = time.perf_counter()
        chunk = first
        try:
            while chunk is not _DONE:
                yield chunk
                chunks += 1
                try:
                    if self._isolate:
                        chunk = self._pool_().run(_next_chunk, (iterator,), None, idle, m.what)
                    else:
                        chunk = next(iterator, _DONE)
                except Exception as exc:
                    raise self._stream_broke(span, m, permit, call, chunks, exc, start) from exc
                if chunk is not _DONE:
                    call._on_chunk(chunk)
        except GeneratorExit:
            self._stream_closed(span, m, permit, call, start)
            with guard("router.stream_close"):
                close = getattr(iterator, "close", None)
                if close is not None and not self._isolate:
                    close()
            raise
        except BaseException as exc:
            if not isinstance(exc, StreamInterruptedError):
                m.breaker.release(permit)
                call._end(exc)
            _end_route_span(span, exc)
            raise
        self._stream_done(span, m, permit, call, start)

    async def astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """The ``async`` twin of :meth:`stream` (``async for chunk in router.astream(x)``)."""
        self._budget.deposit()
        deadline = Deadline(self._clock, self.timeout_s)
        span = self._start_span()
        try:
            with trace.use_span(span, end_on_exit=False):
                plan = self._plan(span, deadline, stream=True)
                request = next(plan)
                while True:
                    if isinstance(request, _Req):
                        outcome = await self._aopen(request, args, kwargs)
                    else:
                        await self._clock.asleep(request)
                        outcome = None
                    try:
                        request = plan.send(outcome)
                    except StopIteration as done:
                        (iterator, first, call), m, permit = done.value
                        break
        except BaseException as exc:
            _end_route_span(span, exc)
            raise
        idle = self.idle_timeout_s or self.attempt_timeout_s or math.inf
        chunks = 0
        start = time.perf_counter()
        chunk = first
        try:
            while chunk is not _DONE:
                yield chunk
                chunks += 1
                try:
                    chunk = await self._anext(m, iterator, idle)
                except Exception as exc:
                    raise self._stream_broke(span, m, permit, call, chunks, exc, start) from exc
                if chunk is not _DONE:
                    call._on_chunk(chunk)
        except GeneratorExit:
            self._stream_closed(span, m, permit, call, start)
            with guard("router.stream_close"):
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
            raise
        except BaseException as exc:
            if not isinstance(exc, StreamInterruptedError):
                m.breaker.release(permit)
                call._end(exc)
            _end_route_span(span, exc)
            raise
        self._stream_done(span, m, permit, call, start)

    def _open(self, req: _Req, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome:
        """Start a stream attempt and wait for its first chunk (or its end)."""
        m = req.member
        call = start_call(m.spec)
        call.set_attribute(semconv.MODELWATCH_ATTEMPT, req.number)
        call.set_attribute(semconv.MODELWATCH_STREAM, True)
        start = time.perf_counter()
        timeout = req.timeout_s
        if self.first_chunk_timeout_s is not None:
            timeout = min(timeout, self.first_chunk_timeout_s)
        try:
            if m.backend.is_async:
                raise ConfigurationError(
                    f"backend {m.backend.name!r} is async: use router.astream()"
                )
            if self._isolate:
                iterator, first = self._pool_().run(
                    _open_stream, (m.backend.fn, args, kwargs), None, timeout, m.what
                )
            else:
                iterator, first = _open_stream(m.backend.fn, args, kwargs)
        except BaseException as exc:
            call._detach()
            call._end(exc)
            return False, exc, time.perf_counter() - start
        call._detach()
        if first is not _DONE:
            call._on_chunk(first)
        return True, (iterator, first, call), time.perf_counter() - start

    async def _aopen(self, req: _Req, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome:
        m = req.member
        call = start_call(m.spec)
        call.set_attribute(semconv.MODELWATCH_ATTEMPT, req.number)
        call.set_attribute(semconv.MODELWATCH_STREAM, True)
        start = time.perf_counter()
        timeout = req.timeout_s
        if self.first_chunk_timeout_s is not None:
            timeout = min(timeout, self.first_chunk_timeout_s)
        fn = m.backend.fn

        async def open_async() -> tuple[Any, Any]:
            source = fn(*args, **kwargs)
            if inspect.isawaitable(source):
                source = await source
            if hasattr(source, "__aiter__"):
                iterator = source.__aiter__()
                try:
                    return iterator, await iterator.__anext__()
                except StopAsyncIteration:
                    return iterator, _DONE
            iterator = iter(source)
            return iterator, next(iterator, _DONE)

        try:
            if m.backend.is_async:
                iterator, first = await await_within(open_async(), timeout, m.what)
            else:
                future = self._pool_().submit(_open_stream, (fn, args, kwargs))
                try:
                    iterator, first = await await_within(
                        asyncio.wrap_future(future), timeout, m.what
                    )
                finally:
                    future.cancel()
        except BaseException as exc:
            call._detach()
            call._end(exc)
            return False, exc, time.perf_counter() - start
        call._detach()
        if first is not _DONE:
            call._on_chunk(first)
        return True, (iterator, first, call), time.perf_counter() - start

    async def _anext(self, m: _Member, iterator: Any, idle: float) -> Any:
        if hasattr(iterator, "__anext__"):

            async def step() -> Any:
                try:
                    return await iterator.__anext__()
                except StopAsyncIteration:
                    return _DONE

            return await await_within(step(), idle, m.what)
        future = self._pool_().submit(_next_chunk, (iterator,))
        try:
            return await await_within(asyncio.wrap_future(future), idle, m.what)
        finally:
            future.cancel()

    def _stream_broke(
        self,
        span: Span,
        m: _Member,
        permit: Permit,
        call: Call,
        chunks: int,
        exc: BaseException,
        start: float,
    ) -> StreamInterruptedError:
        kind = self._kind_of(exc)
        m.breaker.record_failure(permit, kind, time.perf_counter() - start)
        call._end(exc)
        error = StreamInterruptedError(m.backend.model, chunks, kind)
        with guard("router.stream_broke"):
            span.set_attribute(semconv.ERROR_TYPE, kind)
        return error

    def _stream_closed(
        self, span: Span, m: _Member, permit: Permit, call: Call, start: float
    ) -> None:
        """The consumer stopped early: no verdict on the backend."""
        m.breaker.release(permit)
        call._end(stream_closed=True)
        with guard("router.stream_span"):
            span.set_attribute(semconv.MODELWATCH_STREAM, True)
            span.end()

    def _stream_done(
        self, span: Span, m: _Member, permit: Permit, call: Call, start: float
    ) -> None:
        m.breaker.record_success(permit, time.perf_counter() - start)
        call._end()
        with guard("router.stream_span"):
            span.end()

    def __repr__(self) -> str:
        return f"Router({self.name!r}, {[m.backend.model for m in self._members]})"


def _end_route_span(span: Span, exc: BaseException) -> None:
    with guard("router.stream_span"):
        if span.is_recording():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}"))
        span.end()


def _sync_probe(probe: Callable[[], Any]) -> Callable[[], object]:
    """A probe the prober thread can call: async probes run in their own event loop."""
    if inspect.iscoroutinefunction(probe):

        def run() -> object:
            return asyncio.run(probe())

        return run
    return probe
