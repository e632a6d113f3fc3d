"""The failover router: ordered backends, each behind its own breaker, with deadlines.

One call walks the backends in order (see :mod:`modelwatch.resilience.ordering`). A backend
whose breaker refuses, which is benched after a 429, or whose cost budget is spent
(``Budget(enforce="skip")``) is skipped at once; a failed attempt fails over to the next
backend without sleeping. Only when no backend can take the call is one retried, after its
``Retry-After`` (or the reopening of its breaker), within the call's deadline and the retry
token bucket. With ``Router(hedge=Hedge())`` an attempt slow to answer is raced by the next
backend (:mod:`modelwatch.resilience.hedge`). What each error kind means (fail over, bench,
retry) is read from :mod:`modelwatch.errorkinds`; errors that say "your request is wrong"
(``bad_request``) or "unknown error" (``_OTHER``, unless
:attr:`RetryPolicy.failover_on_other`) surface as the original exception; cancellation
propagates at once and releases the breaker permit.

The policy is one generator (:mod:`modelwatch.resilience._plan`) run by one sync and one
async driver (:mod:`modelwatch.resilience._drive`) for calls and streams alike
(:mod:`modelwatch.resilience._streaming`); this class is the public face around it.

Telemetry: one model span per attempt (on :mod:`modelwatch.lifecycle`, with
``modelwatch.router`` and ``modelwatch.attempt``), under a ``route {router}`` INTERNAL span when
the call did more than one answered attempt (:mod:`modelwatch.resilience._route`: a call
answered by its first attempt is that attempt's span alone; docs/router.md, "Trace shape"); the
failover, retry, rejection and hedge decisions go to the event stream of
:mod:`modelwatch.resilience.hooks` (span events and ``modelwatch.failovers`` by its default
listener); ``modelwatch.failover.duration``, ``modelwatch.hedges`` and
``modelwatch.rate_limit.remaining`` are recorded here.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, Final

import structlog

from modelwatch import semconv
from modelwatch._clock import SYSTEM_CLOCK, Clock
from modelwatch._safety import guard
from modelwatch.capture._telemetry import Attributes, register_observable
from modelwatch.capture.monitored import check_tier
from modelwatch.errors import ConfigurationError
from modelwatch.resilience import _streaming
from modelwatch.resilience._drive import AsyncAttempts, SyncAttempts, run_acall, run_call
from modelwatch.resilience._kinds import Classifier, default_classify
from modelwatch.resilience._members import Member
from modelwatch.resilience._plan import Core
from modelwatch.resilience._validate import (
    check_callable,
    check_instance,
    check_timeout,
    checked_backends,
)
from modelwatch.resilience.backend import Backend, BackendStatus
from modelwatch.resilience.breaker import Breaker
from modelwatch.resilience.canary import CanaryStatus, canary_for
from modelwatch.resilience.deadline import WorkerPool
from modelwatch.resilience.hedge import Hedge
from modelwatch.resilience.ordering import Ordering, Priority
from modelwatch.resilience.policy import BreakerPolicy, RetryPolicy
from modelwatch.resilience.warmup import Warmer, WarmupResult, warm_up

__all__ = ["Backend", "BackendStatus", "Router"]

logger = structlog.get_logger("modelwatch")

_routers: weakref.WeakSet[Router] = weakref.WeakSet()
_names_lock = threading.Lock()


def _claim_name(router: Router) -> None:
    """Register ``router`` under its name, or raise if a live router holds the name.

    A router's name labels its metrics and names its breakers (``{router}/{backend}``, shared
    through Redis in fleets), so two live routers with one name would mix their series and
    their breaker state. A router that is garbage, or was closed (:meth:`Router.close`), gives its
    name back; one ``gc.collect()`` on a clash finds routers kept only by reference cycles.
    """
    with _names_lock:
        for attempt in range(2):
            holder = next(
                (r for r in list(_routers) if r.name == router.name and not r._closed), None
            )
            if holder is None:
                break
            if attempt == 0:
                del holder
                gc.collect()
        else:
            raise ConfigurationError(
                f"Router(name={router.name!r}): a router with this name already exists; "
                "names label metrics and name breakers, so each live router needs its own "
                "(close() the old one to reuse its name)"
            )
        _routers.add(router)


#: A rate-limit reading older than this is no longer reported: answers without headers (or
#: no traffic) would otherwise leave a "0 % left" reading, and its alert, standing forever.
RATE_LIMIT_READING_TTL_S = 120.0
#: After this many calls cancelled by their callers, a router logs (once) that a hung
#: backend cannot trip its breaker that way.
CANCELLED_WARN_AFTER: Final = 10
_CANCELLED_TYPES: Final = (asyncio.CancelledError,)


def _current_rate_limits(m: Member, now: float) -> dict[str, float]:
    if not m.rate_limits or now - m.rate_limits_at > RATE_LIMIT_READING_TTL_S:
        return {}
    return dict(m.rate_limits)


def _observe_rate_limits() -> Iterable[tuple[float, Attributes]]:
    for router in list(_routers):
        now = router._core.clock.monotonic()
        for m in router._members:
            for resource, ratio in _current_rate_limits(m, now).items():
                yield (
                    ratio,
                    {
                        semconv.MODELWATCH_ROUTER: router.name,
                        semconv.GEN_AI_REQUEST_MODEL: m.backend.model,
                        semconv.RATE_LIMIT_RESOURCE: resource,
                    },
                )


register_observable(semconv.RATE_LIMIT_REMAINING, _observe_rate_limits)


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


class Router:
    """Routes calls over ordered backends with breakers, deadlines, failover and retries.

    >>> router = Router("summarize", [
    ...     Backend(call_bart, model="facebook/bart-large-cnn", provider="huggingface"),
    ...     Backend(call_flan, model="google/flan-t5-large", provider="huggingface"),
    ... ], timeout_s=30.0, attempt_timeout_s=25.0)                       # doctest: +SKIP
    >>> router.call(document)                                            # doctest: +SKIP

    Args:
        name: names the ``route {name}`` span and labels every metric; unique among live
            routers (a second live router with the name raises ``ConfigurationError``).
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
        hedge: race a slow attempt with the next backend (:class:`~modelwatch.Hedge`; off
            by default). Hedged sync attempts always run on the worker pool.
        warm_every_s: run :meth:`warm_up` now and then every this many seconds, on a daemon
            thread (stopped by :meth:`close`).
        tier: the SLO tier of the router's calls (one of
            :data:`modelwatch.semconv.SLO_TIERS`), on every attempt and failover.
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
        hedge: Hedge | None = None,
        warm_every_s: float | None = None,
        tier: str | None = None,
    ) -> None:
        found = checked_backends(name, backends, Backend)
        owner = f"Router({name!r})"
        if probe_args is not None and not isinstance(probe_args, tuple):
            raise ConfigurationError(f"{owner} probe_args must be a tuple, got {probe_args!r}")
        timeout_s = check_timeout(owner, "timeout_s", timeout_s)
        attempt_timeout_s = check_timeout(owner, "attempt_timeout_s", attempt_timeout_s)
        first_chunk_timeout_s = check_timeout(owner, "first_chunk_timeout_s", first_chunk_timeout_s)
        idle_timeout_s = check_timeout(owner, "idle_timeout_s", idle_timeout_s)
        warm_every_s = check_timeout(owner, "warm_every_s", warm_every_s)
        check_instance(owner, "breaker", breaker, BreakerPolicy, "a BreakerPolicy")
        check_instance(owner, "retry", retry, RetryPolicy, "a RetryPolicy")
        check_instance(owner, "hedge", hedge, Hedge, "a Hedge")
        check_instance(owner, "pool", pool, WorkerPool, "a WorkerPool")
        check_tier(owner, tier)
        check_callable(owner, "ordering", ordering)
        check_callable(owner, "classify", classify)
        if not isinstance(isolate_sync, bool):
            raise ConfigurationError(f"{owner} isolate_sync must be a bool, got {isolate_sync!r}")
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigurationError(
                f"{owner} max_workers must be an int >= 1, got {max_workers!r}"
            )
        self.name = name
        self._closed = False
        _claim_name(self)
        self.breaker_policy = breaker if breaker is not None else BreakerPolicy()
        self.retry_policy = retry if retry is not None else RetryPolicy()
        self.timeout_s = timeout_s
        self.attempt_timeout_s = attempt_timeout_s
        self.first_chunk_timeout_s = first_chunk_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.hedge = hedge
        clock = clock if clock is not None else SYSTEM_CLOCK
        self._members = [
            Member(
                i,
                b,
                Breaker(
                    f"{name}/{b.name}", self.breaker_policy, router=name, model=b.model, clock=clock
                ),
                name,
                tier,
            )
            for i, b in enumerate(found)
        ]
        self._core = Core(
            name,
            self._members,
            retry=self.retry_policy,
            ordering=ordering if ordering is not None else Priority(),
            classify=classify if classify is not None else default_classify,
            clock=clock,
            timeout_s=timeout_s,
            attempt_timeout_s=attempt_timeout_s,
            first_chunk_timeout_s=first_chunk_timeout_s,
            idle_timeout_s=idle_timeout_s,
            isolate_sync=isolate_sync,
            pool=pool,
            max_workers=max_workers,
            hedge=hedge,
        )
        for m in self._members:
            if m.backend.probe is not None:
                m.breaker.set_probe(_sync_probe(m.backend.probe))
            elif probe_args is not None:
                m.breaker.set_probe(_minimal_call(m.backend, probe_args))
        self._canary = canary_for(name, self._members, clock)  # None: no canary
        self._core.canary = self._canary
        self._cancelled = 0
        self._cancel_warned = False
        self._warmer = None if warm_every_s is None else Warmer(warm_every_s, self.warm_up)

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
        now = self._core.clock.monotonic()
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
                    rate_limit_remaining=_current_rate_limits(m, now),
                    warming=m.warming,
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

    def close(self) -> None:
        """Release the router's threads: its backends' worker pools let their workers go
        (busy ones when their attempt ends) and its breakers stop background probing.

        Idle workers also leave by themselves after 30 s; call this when a router is
        discarded in a long-lived process. Calls made afterwards still work. A closed router
        gives its name back: a new ``Router`` may take it.
        """
        self._closed = True
        if self._warmer is not None:
            self._warmer.stop()
        for m in self._members:
            if m.pool is not None:
                m.pool.close()
            m.breaker.set_probe(None)

    def warm_up(
        self, timeout_s: float = 60.0, *, target_s: float | None = None
    ) -> list[WarmupResult]:
        """Call each backend's ``warmup`` (or ``probe``) until it answers within ``target_s``
        (default: its attempt timeout), all backends at once, each for at most ``timeout_s``;
        a 503 "loading" waits its ``estimated_time``. Never raises for a backend's errors:
        each one's :class:`~modelwatch.WarmupResult` says how it went."""
        timeout_s = check_timeout("Router.warm_up", "timeout_s", timeout_s) or 60.0
        target = check_timeout("Router.warm_up", "target_s", target_s)
        core = self._core
        return warm_up(
            self._members,
            clock=core.clock,
            kind_of=core.kind_of,
            timeout_s=timeout_s,
            target_s=target or self.attempt_timeout_s or timeout_s,
        )

    # ------------------------------------------------------------------ calls
    def call(self, *args: Any, **kwargs: Any) -> Any:
        """Call the first backend that can take the call; fail over on errors.

        Returns the backend's result unchanged. Raises the backend's own exception for a
        ``bad_request`` (or unclassified) error, :class:`~modelwatch.AllBackendsFailedError`
        when no backend succeeded within the deadline.
        """
        core = self._core
        route, deadline = core.begin()
        try:
            attempts = SyncAttempts(core, args, kwargs)
            result = run_call(core, route, deadline, attempts, core.clock.sleep)
        except BaseException as exc:
            route.end(exc)
            raise
        route.end()
        return result

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """The ``async`` twin of :meth:`call`: coroutine backends are awaited (and cancelled
        at their timeout); sync backends run on the worker pool."""
        core = self._core
        route, deadline = core.begin()
        try:
            result = await run_acall(
                core, route, deadline, AsyncAttempts(core, args, kwargs), core.clock.asleep
            )
        except BaseException as exc:
            route.end(exc)
            if isinstance(exc, _CANCELLED_TYPES):
                self._note_cancelled()
            raise
        route.end()
        return result

    def _note_cancelled(self) -> None:
        """Cancellations are no verdict on a backend, so a caller whose own deadline is
        shorter than the attempt timeout never lets a hung primary trip its breaker: say so,
        once per router, when that keeps happening."""
        self._cancelled += 1
        if self._cancel_warned or self._cancelled < CANCELLED_WARN_AFTER:
            return
        self._cancel_warned = True
        with guard("router.cancelled_log"):
            logger.warning(
                "modelwatch.router.calls_cancelled",
                router=self.name,
                cancelled=self._cancelled,
                attempt_timeout_s=self.attempt_timeout_s,
                hint=(
                    "calls keep being cancelled by their callers; a cancellation does not count "
                    "against a breaker, so a backend that hangs longer than the callers wait "
                    "never trips it: give the router a timeout_s/attempt_timeout_s shorter than "
                    "the callers' own deadline"
                ),
            )

    # ------------------------------------------------------------------ streams
    def stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Stream chunks from the first backend that produces one.

        Fails over (like :meth:`call`) until a backend delivers its first chunk within
        ``first_chunk_timeout_s``; after that the stream is committed to that backend, each
        later chunk must come within ``idle_timeout_s``, and a break raises
        :class:`~modelwatch.StreamInterruptedError` (chained to the backend error).
        """
        return _streaming.stream(self._core, args, kwargs)

    def astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """The ``async`` twin of :meth:`stream` (``async for chunk in router.astream(x)``)."""
        return _streaming.astream(self._core, args, kwargs)

    def __repr__(self) -> str:
        models = [m.backend.model for m in getattr(self, "_members", ())]
        return f"Router({self.name!r}, {models})"
