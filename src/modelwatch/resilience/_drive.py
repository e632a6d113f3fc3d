"""The two drivers of the router's plan (one sync, one async) and the attempts of a call.

:func:`drive` and :func:`adrive` run a :meth:`Core.plan <modelwatch.resilience._plan.Core.plan>`
generator: they start the attempts it asks for through an *attempts* object, sleep when it
says so, and send back each outcome. The attempts of :meth:`Router.call` /
:meth:`Router.acall` are :class:`SyncAttempts` / :class:`AsyncAttempts`; the stream wrappers
bring their own (they open a stream up to its first chunk). Every attempt is a model call on
the public lifecycle (:mod:`modelwatch.lifecycle`).

One attempt at a time is the common case and the fast path: ``run(req)`` runs it to its end.
When the router hedges, an attempt with a hedge delay is *started* instead, and the driver
waits for whichever comes first: an attempt's end (its outcome goes to the plan) or the hedge
delay (:data:`HEDGE_DUE` goes to the plan, which may start another attempt alongside). When
the plan is done, attempts still running are the losers: cancelled (async) or abandoned on
their worker pool (sync: the thread finishes on its own, its result is dropped).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from modelwatch import lifecycle
from modelwatch.resilience import _events
from modelwatch.resilience._members import HEDGE_DUE, WAIT, Member, Outcome, Plan, Req
from modelwatch.resilience._plan import Core
from modelwatch.resilience._route import Route
from modelwatch.resilience.deadline import AttemptTimeoutError, Deadline, await_within

__all__ = ["AsyncAttempts", "SyncAttempts", "adrive", "drive", "run_acall", "run_call"]


class Attempts(Protocol):
    """How a sync driver runs attempts (``start``/``next_event``/``abandon``: hedging only)."""

    running: int

    def run(self, req: Req) -> Outcome: ...
    def start(self, req: Req) -> None: ...
    def next_event(self, due: float | None) -> Any: ...
    def abandon(self) -> None: ...


class AsyncAttemptsProtocol(Protocol):
    """How the async driver runs attempts."""

    running: int

    async def run(self, req: Req) -> Outcome: ...
    def start(self, req: Req) -> None: ...
    async def next_event(self, due: float | None) -> Any: ...
    async def abandon(self) -> None: ...


def _started(attempts: Attempts | AsyncAttemptsProtocol, request: Any, due: float | None) -> Any:
    """Start ``request`` alongside the running attempts (unless it is :data:`WAIT`); the hedge
    timer it arms, else ``due``."""
    if request is WAIT:
        return due
    attempts.start(request)
    return due if request.hedge_s is None else time.perf_counter() + request.hedge_s


def run_call(
    core: Core, route: Route, deadline: Deadline, attempts: Attempts, sleep: Callable[[float], None]
) -> Any:
    """One routed call: the primary's attempt straight away when :meth:`Core.first` allows
    (the happy path: an answer ends the call here), else, or after it failed, the plan."""
    walk, req = core.first(route, deadline)
    outcome = None
    if req is not None:
        outcome = attempts.run(req)
        if outcome[0]:
            return core.answered(route, walk, outcome)  # type: ignore[arg-type]
    return drive(core.plan(route, deadline, walk, outcome), attempts, sleep)


async def run_acall(
    core: Core,
    route: Route,
    deadline: Deadline,
    attempts: AsyncAttemptsProtocol,
    sleep: Callable[[float], Awaitable[None]],
) -> Any:
    """The ``async`` twin of :func:`run_call`."""
    walk, req = core.first(route, deadline)
    outcome = None
    if req is not None:
        outcome = await attempts.run(req)
        if outcome[0]:
            return core.answered(route, walk, outcome)  # type: ignore[arg-type]
    return await adrive(core.plan(route, deadline, walk, outcome), attempts, sleep)


def drive(plan: Plan, attempts: Attempts, sleep: Callable[[float], None]) -> Any:
    """Run ``plan`` to its end on this thread; return its value (or raise its error)."""
    due: float | None = None  # perf_counter time of the hedge timer
    try:
        request = next(plan)
        while True:
            if type(request) is Req and request.hedge_s is None and not attempts.running:
                outcome: Any = attempts.run(request)  # the fast path: one attempt at a time
            elif type(request) is Req or request is WAIT:
                due = _started(attempts, request, due)
                outcome = attempts.next_event(due)
                due = None if outcome is HEDGE_DUE else due
            else:
                sleep(request)
                outcome = None
            try:
                request = plan.send(outcome)
            except StopIteration as done:
                return done.value
    finally:
        if attempts.running:
            attempts.abandon()
            plan.close()


async def adrive(
    plan: Plan, attempts: AsyncAttemptsProtocol, sleep: Callable[[float], Awaitable[None]]
) -> Any:
    """The ``async`` twin of :func:`drive`."""
    due: float | None = None
    try:
        request = next(plan)
        while True:
            if type(request) is not Req and request is not WAIT:  # a wait before a retry
                await sleep(request)
                outcome: Any = None
            elif type(request) is Req and request.hedge_s is None and not attempts.running:
                outcome = await attempts.run(request)
            else:
                due = _started(attempts, request, due)
                outcome = await attempts.next_event(due)
                due = None if outcome is HEDGE_DUE else due
            try:
                request = plan.send(outcome)
            except StopIteration as done:
                return done.value
    finally:
        if attempts.running:  # losers of a hedge race, or the call ended around them
            plan.close()  # releases their permits (no verdict) if the plan did not finish
            await attempts.abandon()


def _run_coroutine(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run an async backend to completion on a worker thread (for the sync ``call``)."""
    return asyncio.run(fn(*args, **kwargs))


def _succeeded(core: Core, call: lifecycle.Call, m: Member, result: Any) -> None:
    call.stop(result)
    if m.rate_limits or _events.may_carry_headers(result):
        _events.note_success(m, result, core.clock.monotonic())


def _success(core: Core, call: lifecycle.Call, result: Any, start: float, req: Req) -> Outcome:
    duration = time.perf_counter() - start
    _succeeded(core, call, req.member, result)
    return True, result, duration, req


def _failure(call: lifecycle.Call, exc: BaseException, start: float, req: Req) -> Outcome:
    duration = time.perf_counter() - start
    call.fail(exc)
    return False, exc, duration, req


class _Running:
    """A started sync attempt: its call, its pool task, when it began and must end."""

    __slots__ = ("call", "expires", "req", "start", "task")

    def __init__(self, req: Req, call: lifecycle.Call, task: Any, start: float) -> None:
        self.req = req
        self.call = call
        self.task = task
        self.start = start
        self.expires = start + req.timeout_s


class SyncAttempts:
    """The attempts of one :meth:`Router.call`."""

    __slots__ = ("_args", "_core", "_done", "_kwargs", "_running", "running")

    def __init__(self, core: Core, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._core = core
        self._args = args
        self._kwargs = kwargs
        self.running = 0
        self._running: list[_Running] = []
        self._done: queue.SimpleQueue[Any] | None = None

    def run(self, req: Req) -> Outcome:
        """Run one attempt to its end (on the backend's pool unless ``isolate_sync=False``)."""
        core = self._core
        m = req.member
        spec = m.first_spec if req.number == 1 else m.spec_for(req.number)
        call = req.call = lifecycle.start(spec)
        fn = m.backend.fn
        args, kwargs = self._args, self._kwargs
        start = time.perf_counter()
        try:
            if m.backend.is_async:
                result = core.pool_for(m).run(
                    _run_coroutine, (fn, *args), kwargs, req.timeout_s, m.what
                )
            elif core.isolate_sync:
                result = core.pool_for(m).run(fn, args, kwargs, req.timeout_s, m.what)
            else:
                result = fn(*args, **kwargs)
        except BaseException as exc:
            return _failure(call, exc, start, req)
        return _success(core, call, result, start, req)

    def start(self, req: Req) -> None:
        """Start an attempt on the backend's pool and return at once (hedging)."""
        m = req.member
        if self._done is None:
            self._done = queue.SimpleQueue()
        fn: Callable[..., Any] = m.backend.fn
        args = self._args
        if m.backend.is_async:
            fn, args = _run_coroutine, (fn, *args)
        call = req.call = lifecycle.start(m.spec_for(req.number))
        try:
            task = self._core.pool_for(m).start(fn, args, self._kwargs, self._done)
        finally:
            call.detach()  # the task runs in a copy of the context with the call current
        self._running.append(_Running(req, call, task, time.perf_counter()))
        self.running += 1

    def next_event(self, due: float | None) -> Any:
        """The outcome of the first attempt to end, or :data:`HEDGE_DUE` at ``due``."""
        assert self._done is not None
        while True:
            now = time.perf_counter()
            first = min(self._running, key=lambda r: r.expires)
            until = first.expires if due is None else min(due, first.expires)
            try:
                task = self._done.get(timeout=max(0.0, until - now))
            except queue.Empty:
                now = time.perf_counter()
                if due is not None and now >= due:
                    return HEDGE_DUE
                if now >= first.expires:  # abandoned at its timeout
                    self._forget(first)
                    first.task.abandon()
                    exc = AttemptTimeoutError(first.req.member.what, first.req.timeout_s)
                    first.call.fail(exc)
                    return False, exc, now - first.start, first.req
                continue
            found = next((r for r in self._running if r.task is task), None)
            if found is None:  # a task given up on earlier: its late result is dropped
                continue
            self._forget(found)
            duration = time.perf_counter() - found.start
            if task.error is not None:
                found.call.fail(task.error)
                return False, task.error, duration, found.req
            _succeeded(self._core, found.call, found.req.member, task.result)
            return True, task.result, duration, found.req

    def _forget(self, r: _Running) -> None:
        self._running.remove(r)
        self.running -= 1

    def abandon(self) -> None:
        """Give up on the attempts still running: their results will be dropped."""
        for r in self._running:
            r.task.abandon()
            r.call.fail(concurrent.futures.CancelledError())
        self._running.clear()
        self.running = 0


class AsyncAttempts:
    """The attempts of one :meth:`Router.acall`."""

    __slots__ = ("_args", "_core", "_kwargs", "_tasks", "running")

    def __init__(self, core: Core, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._core = core
        self._args = args
        self._kwargs = kwargs
        self.running = 0
        self._tasks: set[asyncio.Task[Outcome]] = set()

    async def run(self, req: Req) -> Outcome:
        """Run one attempt to its end: a coroutine backend is awaited (and cancelled at its
        timeout), a sync one runs on the backend's pool."""
        core = self._core
        m = req.member
        spec = m.first_spec if req.number == 1 else m.spec_for(req.number)
        call = req.call = lifecycle.start(spec)
        fn = m.backend.fn
        start = time.perf_counter()
        try:
            if m.backend.is_async:
                result = await await_within(fn(*self._args, **self._kwargs), req.timeout_s, m.what)
            else:
                future = core.pool_for(m).submit(fn, self._args, self._kwargs)
                try:
                    result = await await_within(asyncio.wrap_future(future), req.timeout_s, m.what)
                finally:
                    future.cancel()  # no-op once it ran; never starts if still queued
        except BaseException as exc:
            return _failure(call, exc, start, req)
        return _success(core, call, result, start, req)

    def start(self, req: Req) -> None:
        """Start an attempt as a task of its own (hedging)."""
        self._tasks.add(asyncio.ensure_future(self.run(req)))
        self.running += 1

    async def next_event(self, due: float | None) -> Any:
        """The outcome of the first attempt to end, or :data:`HEDGE_DUE` at ``due``."""
        timeout = None if due is None else max(0.0, due - time.perf_counter())
        done, _ = await asyncio.wait(
            self._tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            return HEDGE_DUE
        task = done.pop()
        self._tasks.discard(task)
        self.running -= 1
        return task.result()

    async def abandon(self) -> None:
        """Cancel the attempts still running and wait until they have ended."""
        tasks, self._tasks = self._tasks, set()
        self.running = 0
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
