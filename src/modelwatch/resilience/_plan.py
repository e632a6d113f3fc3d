"""The router's policy: one generator decides, the drivers run what it asks.

:meth:`Core.plan` is the whole failover, retry and hedging policy as a generator, in the manner
of httpx's ``Auth.auth_flow``: it yields a :class:`Req` (start this attempt), a float (sleep that
long) or :data:`WAIT` (wait for a running attempt), and is sent back each attempt's
:data:`Outcome` (or :data:`HEDGE_DUE` when an attempt is slow to answer). The two drivers of
:mod:`modelwatch.resilience._drive` (sync and async) run it for calls and streams alike, so
the four entry points cannot drift apart. What an error kind means is read from
:mod:`modelwatch.errorkinds`.

:class:`Core` is what the drivers and the stream wrappers may use of a router: its members,
timeouts, clock, pools, classifier and the plan; :class:`~modelwatch.Router` is the public
face around it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, Final

from modelwatch import errorkinds, semconv
from modelwatch._clock import Clock
from modelwatch._safety import guard, report_internal_error
from modelwatch.capture import budget as _budgets
from modelwatch.errors import AllBackendsFailedError, Attempt, CircuitOpenError
from modelwatch.resilience import _events
from modelwatch.resilience._kinds import Classifier, retry_after_s
from modelwatch.resilience._members import HEDGE_DUE, WAIT, Member, Outcome, Plan, Req
from modelwatch.resilience._retry_tokens import RetryTokens
from modelwatch.resilience._route import Route
from modelwatch.resilience.breaker import Permit
from modelwatch.resilience.deadline import AttemptTimeoutError, Deadline, WorkerPool
from modelwatch.resilience.hedge import Hedge, LatencyWindow
from modelwatch.resilience.ordering import Ordering, Priority
from modelwatch.resilience.policy import RetryPolicy

__all__ = ["Core"]

#: How long a 429 without ``Retry-After`` benches a backend.
DEFAULT_BENCH_S: Final = 1.0
#: A ``Retry-After`` longer than this is treated as this (a bogus header cannot bench forever).
MAX_BENCH_S: Final = 3600.0
#: Reasons of failovers and rejections that are not error kinds.
REASON_CIRCUIT_OPEN: Final = semconv.REASON_CIRCUIT_OPEN
REASON_BENCHED: Final = "rate_limited"
REASON_BUDGET: Final = semconv.REASON_BUDGET


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


class Core:
    """One router's routing engine (see the module docstring). Attributes are read-only
    for the drivers."""

    def __init__(
        self,
        name: str,
        members: list[Member],
        *,
        retry: RetryPolicy,
        ordering: Ordering,
        classify: Classifier,
        clock: Clock,
        timeout_s: float | None,
        attempt_timeout_s: float | None,
        first_chunk_timeout_s: float | None,
        idle_timeout_s: float | None,
        isolate_sync: bool,
        pool: WorkerPool | None,
        max_workers: int,
        hedge: Hedge | None,
    ) -> None:
        self.name = name
        self.members = members
        self._head = members[:1]  # the primary, for first()
        self.retry = retry
        self.ordering = ordering
        self.priority = isinstance(ordering, Priority)
        self.classify = classify
        self.clock = clock
        self.timeout_s = timeout_s
        self.attempt_timeout_s = attempt_timeout_s
        self.first_chunk_timeout_s = first_chunk_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.isolate_sync = isolate_sync
        self.hedge = hedge
        #: regressions' canary controller (``order(members)``: who may serve this call;
        #: ``observe(member, ok, value, duration, kind)``: every attempt's outcome), or None
        self.canary: Any = None
        self.tokens = RetryTokens(retry, clock)
        self._pool = pool
        self._max_workers = max_workers
        self._span_attributes = {semconv.MODELWATCH_ROUTER: name}
        self._span_name = semconv.route_span_name(name)
        if hedge is not None:
            for m in members:
                m.latencies = LatencyWindow(hedge.window)

    # ------------------------------------------------------------------ for the drivers
    def begin(self, *, stream: bool = False) -> tuple[Route, Deadline]:
        """A call starts: its retry tokens, its deadline and its route (whose span starts when
        the call first needs it; at once with a hedge or a canary, and for a stream, whose
        span is not made current here: see :mod:`._route`)."""
        self.tokens.deposit()
        deadline = Deadline(self.clock, self.timeout_s)
        # a hedge may race the first attempt, a canary decision is an event of the route span,
        # a stream's attempt may still be running when it would start: those start it at once
        eager = stream or self.hedge is not None or self.canary is not None
        route = Route(self._span_name, self._span_attributes, eager=eager, current=not stream)
        return route, deadline

    def pool_for(self, m: Member) -> WorkerPool:
        """The backend's own bounded pool (a bulkhead: a hung backend can tie up its own
        threads only, never the backups'), unless the router was given one ``pool``."""
        pool = self._pool or m.pool
        if pool is None:
            pool = m.pool = WorkerPool(
                self._max_workers, name=f"modelwatch-{self.name}-{m.backend.name}"
            )
        return pool

    def kind_of(self, exc: BaseException) -> str:
        """The error kind of an attempt's exception (never raises)."""
        if isinstance(exc, AttemptTimeoutError):
            return semconv.ERROR_TIMEOUT
        try:
            return self.classify(exc)
        except Exception as internal:
            report_internal_error("router.classify", internal)
            return semconv.ERROR_OTHER

    # ------------------------------------------------------------------ the policy
    def first(self, route: Route, deadline: Deadline) -> tuple[_Walk | None, Req | None]:
        """The plan's first step, taken without its generator when it is a plain one (priority
        order, no hedge, no canary): the call's walk and the primary's attempt (``None``: the
        primary cannot take the call). ``(None, None)``: let the plan take every step.

        A driver runs the attempt; a success ends the call with :meth:`answered`; anything
        else goes on in ``plan(route, deadline, walk, outcome)`` exactly as if the plan had
        made the attempt itself (this is the happy path's whole cost: no generator, no
        ordering, no hedge timer).
        """
        if self.canary is not None or self.hedge is not None or not self.priority:
            return None, None
        walk = _Walk(deadline.started)
        return walk, self._start(route, iter(self._head), walk, deadline, may_hedge=False)

    def answered(self, route: Route, walk: _Walk, outcome: Outcome) -> Any:
        """The first attempt of :meth:`first` succeeded: end the call as the plan would."""
        _, value, duration, req = outcome
        return self._succeeded(route, walk, req, value, duration, stream=False)

    def plan(
        self,
        route: Route,
        deadline: Deadline,
        walk: _Walk | None = None,
        first: Outcome | None = None,
        *,
        stream: bool = False,
    ) -> Plan:
        """Decide attempts, failovers, hedges and retries; the drivers run what it yields.

        Returns the result; raises the surfaced exception or :class:`AllBackendsFailedError`.
        For streams it returns ``(value, member, permit)`` at the first chunk and leaves the
        breaker outcome to the stream driver. Streams are never hedged. ``walk`` (and
        ``first``, the primary's failed attempt): the call's first step was :meth:`first`.
        """
        members = self._ordered()
        canary = self.canary
        hedge = None if stream else self.hedge
        hedges_left = 0 if hedge is None else hedge.max_hedges
        retries = 0
        running: list[Req] = []  # attempts in flight: more than one only while hedging
        todo = iter(members)
        if walk is not None:  # first() took the primary's step: go on from there
            next(todo)
        walk = _Walk(deadline.started) if walk is None else walk
        event: Any = first  # the primary's failed attempt, if first() made one
        request = first[3] if first is not None else None
        try:
            if first is None:
                request = self._start(route, todo, walk, deadline, may_hedge=hedges_left > 0)
            while True:
                while request is not None or running:
                    if request is not None:
                        running.append(request)
                    if event is None:
                        event = yield (WAIT if request is None else request)
                    request = None
                    if event is HEDGE_DUE:
                        event = None
                        if hedges_left > 0 and self.tokens.withdraw():  # a hedge costs a token
                            hedges_left -= 1
                            request = self._hedge(
                                route, todo, walk, deadline, running[-1], more=hedges_left > 0
                            )
                        continue
                    ok, value, duration, req = event
                    event = None
                    running.remove(req)
                    if canary is not None:  # the canary controller sees every outcome
                        canary.observe(
                            req.member, ok, value, duration, None if ok else self.kind_of(value)
                        )
                    if ok:
                        return self._succeeded(route, walk, req, value, duration, stream=stream)
                    self._lost(route, walk, req, value, duration)
                    if not running:  # fail over at once, without sleeping
                        request = self._start(
                            route, todo, walk, deadline, may_hedge=hedges_left > 0
                        )
                # nobody could take the call: one more chance, or give up
                member, wait = self._retry(route, members, walk, retries, deadline)
                retries += 1
                if wait > 0:
                    yield wait
                walk.passed = None
                todo = iter((member,))
                request = self._start(route, todo, walk, deadline, may_hedge=hedges_left > 0)
        finally:
            for req in running:  # losers of a hedge race, or the call ended around them
                req.member.breaker.release(req.permit)
                if req.hedge:
                    _events.hedge_outcome(self.name, _events.HEDGE_CANCELLED)

    def _ordered(self) -> list[Member]:
        """The backends in the order this call tries them (a canary's candidate serves its
        share, and only that)."""
        members = self.members if self.priority else list(self.ordering(self.members))
        if self.canary is not None:
            members = self.canary.order(members)
        return members

    def _lost(
        self, route: Route, walk: _Walk, req: Req, exc: BaseException, duration: float
    ) -> None:
        """Attempt ``req`` failed with ``exc``: learn from it (raises if it must surface)."""
        if req.hedge:
            _events.hedge_outcome(self.name, _events.HEDGE_LOST)
        route.tried(req)  # (if the route span has not started: linked)
        self._failed(route, req.member, req.permit, exc, duration=duration, walk=walk)

    def _start(
        self,
        route: Route,
        todo: Iterator[Member],
        walk: _Walk,
        deadline: Deadline,
        *,
        may_hedge: bool,
        hedge: bool = False,
    ) -> Req | None:
        """The next backend of ``todo`` that admits the call, as an attempt to run."""
        monotonic = self.clock.monotonic
        for m in todo:
            now = monotonic()
            left = deadline.at - now
            if left <= 0:
                return None
            permit = self._admit(route, m, walk, now)
            if permit is None:
                continue
            if permit.trial:  # a half-open trial: its outcome changes the breaker's state
                route.need()
            walk.number += 1
            if walk.passed is not None and not hedge:
                _events.failover(self.name, route.span, walk.passed, m)
            timeout = m.backend.timeout_s
            if timeout is None:
                timeout = self.attempt_timeout_s
            if timeout is not None and timeout < left:
                left = timeout
            req = Req(m, permit, walk.number, left, hedge=hedge)
            if may_hedge:
                req.hedge_s = self._hedge_delay(req)
            req.started = now
            return req
        return None

    def _hedge_delay(self, req: Req) -> float | None:
        """When to hedge ``req`` (``None``: not before its own timeout ends it)."""
        if self.hedge is None:
            return None
        delay = self.hedge.delay_s(req.member.latencies)
        return delay if delay < req.timeout_s else None

    def _hedge(
        self,
        route: Route,
        todo: Iterator[Member],
        walk: _Walk,
        deadline: Deadline,
        slow: Req,
        *,
        more: bool,
    ) -> Req | None:
        """A hedged attempt on the next backend that admits the call, alongside ``slow``
        (``more``: it may be hedged in turn)."""
        req = self._start(route, todo, walk, deadline, may_hedge=False, hedge=True)
        if req is not None:
            _events.hedge_started(self.name, route.span, slow.member, req, slow.hedge_s or 0.0)
            if more:
                req.hedge_s = self._hedge_delay(req)
        return req

    def _succeeded(
        self, route: Route, walk: _Walk, req: Req, value: Any, duration: float, *, stream: bool
    ) -> Any:
        m = req.member
        if walk.first_passed is not None:  # what failing over cost this call
            _events.failover_duration(self.name, walk.first_passed, m, req.started - walk.started)
        if req.hedge:
            _events.hedge_outcome(self.name, _events.HEDGE_WON)
        if m.latencies is not None:
            m.latencies.add(duration)
        if stream:
            return value, m, req.permit
        if duration >= m.breaker.policy.slow_call_s:  # the breaker may open: its event goes
            route.tried(req)  # on the route span
            route.need()
        m.breaker.record_success(req.permit, duration)
        return value

    def _admit(self, route: Route, m: Member, walk: _Walk, now: float) -> Permit | None:
        """The backend's permit, or ``None`` (recorded as a rejection) if it cannot take it.

        Raises :class:`~modelwatch.BudgetExceededError` when a spent budget with
        ``enforce="refuse"`` covers the backend."""
        benched = m.benched_until - now if m.benched_until else 0.0
        spent = self._spent(m) if _budgets.any_enforcing() else None
        wait: float | None
        if spent is not None:  # a spent budget with enforce="skip": not even its breaker asked
            reason, wait = REASON_BUDGET, spent
        elif benched <= 0.0:
            permit = m.breaker.admit()
            if permit is not None:
                return permit
            reason, wait = REASON_CIRCUIT_OPEN, m.breaker.retry_after_s
        else:  # benched after a 429: its breaker is not even asked (no trial slot taken)
            reason, wait = REASON_BENCHED, benched
        rejected = _events.rejected(self.name, route.span, m, reason, wait)
        walk.attempts.append(Attempt(m.backend.model, reason, rejected, 0.0))
        if reason == REASON_BUDGET:
            walk.last_kind[m.index] = REASON_BUDGET  # not a retry kind: no retry in this call
        if walk.last_exc is None or isinstance(walk.last_exc, CircuitOpenError):
            walk.last_exc = rejected
        walk.pass_over(m, reason)
        return None

    def _spent(self, m: Member) -> float | None:
        """Seconds until a spent ``enforce="skip"`` budget covering ``m`` renews, or ``None``
        when none does; raises the error of a spent ``enforce="refuse"`` one."""
        b = m.backend
        found = _budgets.spent_budgets(model=b.model, provider=b.provider, analysis=b.analysis)
        if not found:
            return None
        for budget in found:
            if budget.enforce == "refuse":
                raise budget.error()
        return max(0.0, min(budget.period_end for budget in found) - time.time())

    def _failed(
        self,
        route: Route,
        m: Member,
        permit: Permit,
        exc: BaseException,
        *,
        duration: float,
        walk: _Walk,
    ) -> None:
        """Learn from a failed attempt; raise if the error must surface instead of failing
        over (cancellation, bad requests, unclassified errors)."""
        kind = self.kind_of(exc)
        if not isinstance(exc, Exception) or kind == semconv.ERROR_CANCELLED:
            m.breaker.release(permit)
            raise exc
        m.breaker.record_failure(permit, kind, duration)
        _events.note_headers(m, exc, self.clock.monotonic())
        walk.attempts.append(Attempt(m.backend.model, kind, exc, duration))
        walk.last_exc = exc
        walk.last_kind[m.index] = kind
        if kind == semconv.ERROR_OTHER:
            fails_over = self.retry.failover_on_other
        else:
            fails_over = errorkinds.fails_over(kind)
        if not fails_over:
            with guard("router.error_type"):
                route.span.set_attribute(semconv.ERROR_TYPE, kind)
            raise exc
        if errorkinds.benches(kind):
            bench = retry_after_s(exc)
            bench = DEFAULT_BENCH_S if bench is None else bench
            m.benched_until = self.clock.monotonic() + min(bench, MAX_BENCH_S)
        walk.pass_over(m, kind)

    def availability(self, m: Member, kind: str | None, retries: int) -> float | None:
        """Seconds until ``m`` could take this call again (``None``: not for this call)."""
        policy = self.retry
        if kind is not None and kind not in policy.retry_kinds:
            return None  # auth, not_found...: retrying cannot help
        now = self.clock.monotonic()
        if m.benched_until > now:
            return m.benched_until - now
        after = m.breaker.retry_after_s
        if after is not None:
            return after
        if kind is None:  # never tried: its half-open trial slot was busy
            return policy.backoff_s
        return float(policy.backoff_s * 2.0**retries)

    def _retry(
        self, route: Route, members: Sequence[Member], walk: _Walk, retries: int, deadline: Deadline
    ) -> tuple[Member, float]:
        """The backend to retry and the wait before it; raises when there is none."""
        chance = self._next_chance(members, walk, retries, deadline)
        if chance is None:
            raise self._give_up(route, members, walk)
        member, wait = chance
        reason = walk.last_kind.get(member.index, REASON_CIRCUIT_OPEN)
        _events.retry(
            self.name, route.span, member, attempt=walk.number + 1, wait_s=wait, reason=reason
        )
        return chance

    def _next_chance(
        self, members: Sequence[Member], walk: _Walk, retries: int, deadline: Deadline
    ) -> tuple[Member, float] | None:
        """The backend to retry and the wait before it, if a retry is allowed now."""
        policy = self.retry
        if retries >= policy.max_retries:
            return None
        best: tuple[Member, float] | None = None
        for m in members:
            wait = self.availability(m, walk.last_kind.get(m.index), retries)
            if wait is not None and (best is None or wait < best[1]):
                best = (m, wait)
        if best is None:
            return None
        _, wait = best
        if wait > policy.max_wait_s or wait >= deadline.remaining():
            return None
        if not self.tokens.withdraw():
            return None
        return best

    def _give_up(self, route: Route, members: Sequence[Member], walk: _Walk) -> Exception:
        waits = [
            w
            for m in members
            if (w := self.availability(m, walk.last_kind.get(m.index), 0)) is not None
        ]
        attempts = walk.attempts
        if attempts and all(a.error_kind == REASON_BUDGET for a in attempts):
            b = members[0].backend  # every backend skipped for its budget: say so
            spent = _budgets.spent_budgets(model=b.model, provider=b.provider, analysis=b.analysis)
            if spent:
                return spent[0].error()
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
            route.span.set_attribute(semconv.ERROR_TYPE, kind)
        return error
