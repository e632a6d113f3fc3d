"""The router's streaming drivers: fail over until a first chunk, then commit.

Until a backend delivers its first chunk (within ``first_chunk_timeout_s``), a stream fails
over like any call, driven by the same plan. From the first chunk on the stream belongs to
that backend: each later chunk must come within ``idle_timeout_s``, a break raises
:class:`~modelwatch.StreamInterruptedError` and counts against the backend's breaker, and a
consumer that stops early (``break``, ``close()``, garbage collection) gives the permit back
without a verdict. Sync backends are pulled on the worker pool (a hung stream is abandoned);
async ones are awaited under a timeout.

The route span is never current across a ``yield``: it is made current only while this
module's own code runs, so the consumer's context is left as it found it.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span

from modelwatch import semconv
from modelwatch._safety import guard
from modelwatch.capture.call import Call, start_call
from modelwatch.capture.scrub import record_exception
from modelwatch.errors import ConfigurationError, StreamInterruptedError
from modelwatch.resilience._members import DONE, Member, Outcome, Req
from modelwatch.resilience.breaker import Permit
from modelwatch.resilience.deadline import Deadline, await_within

if TYPE_CHECKING:
    from modelwatch.resilience.router import Router

__all__ = ["astream", "stream"]


def _open_stream(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    iterator = iter(fn(*args, **kwargs))
    return iterator, next(iterator, DONE)


def _next_chunk(iterator: Iterator[Any]) -> Any:
    return next(iterator, DONE)


class _Committed:
    """A stream after its first chunk: the backend, its permit and its attempt call."""

    __slots__ = ("call", "chunks", "member", "permit", "span", "start")

    def __init__(self, span: Span, opened: tuple[Any, Member, Permit]) -> None:
        (_, _, self.call), self.member, self.permit = opened
        self.span = span
        self.chunks = 0
        self.start = time.perf_counter()

    def broke(self, router: Router, exc: BaseException) -> StreamInterruptedError:
        kind = router._kind_of(exc)
        self.member.breaker.record_failure(self.permit, kind, time.perf_counter() - self.start)
        self.call._end(exc)
        with guard("router.stream_broke"):
            self.span.set_attribute(semconv.ERROR_TYPE, kind)
        return StreamInterruptedError(self.member.backend.model, self.chunks, kind)

    def closed(self) -> None:
        """The consumer stopped early: no verdict on the backend."""
        self.member.breaker.release(self.permit)
        self.call._end(stream_closed=True)
        with guard("router.stream_span"):
            self.span.set_attribute(semconv.MODELWATCH_STREAM, True)
            self.span.end()

    def failed(self, exc: BaseException) -> None:
        """Something other than the backend ended the stream (cancellation, our own error)."""
        if not isinstance(exc, StreamInterruptedError):
            self.member.breaker.release(self.permit)
            self.call._end(exc)
        end_route_span(self.span, exc)

    def done(self) -> None:
        self.member.breaker.record_success(self.permit, time.perf_counter() - self.start)
        self.call._end()
        with guard("router.stream_span"):
            self.span.end()


def end_route_span(span: Span, exc: BaseException) -> None:
    """End a route span that is not managed by a ``with`` block, with the error on it."""
    with guard("router.stream_span"):
        if span.is_recording():
            record_exception(span, exc, type(exc).__name__)  # scrubbed
        span.end()


def _start_attempt(m: Member, req: Req) -> Call:
    call = start_call(m.spec_for(req.number))
    call.set_attribute(semconv.MODELWATCH_STREAM, True)
    return call


def _first_timeout(router: Router, req: Req) -> float:
    if router.first_chunk_timeout_s is None:
        return req.timeout_s
    return min(req.timeout_s, router.first_chunk_timeout_s)


def _opened(call: Call, first: Any, iterator: Any, start: float) -> Outcome:
    call._detach()
    if first is not DONE:
        call._on_chunk(first)
    return True, (iterator, first, call), time.perf_counter() - start


def _open_failed(call: Call, exc: BaseException, start: float) -> Outcome:
    call._detach()
    call._end(exc)
    return False, exc, time.perf_counter() - start


def _open(router: Router, req: Req, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome:
    """Start a sync stream attempt and wait for its first chunk (or its end)."""
    m = req.member
    call = _start_attempt(m, req)
    start = time.perf_counter()
    try:
        if m.backend.is_async:
            raise ConfigurationError(f"backend {m.backend.name!r} is async: use router.astream()")
        if router._isolate:
            iterator, first = router._pool_for(m).run(
                _open_stream,
                (m.backend.fn, args, kwargs),
                None,
                _first_timeout(router, req),
                m.what,
            )
        else:
            iterator, first = _open_stream(m.backend.fn, args, kwargs)
    except BaseException as exc:
        return _open_failed(call, exc, start)
    return _opened(call, first, iterator, start)


def stream(router: Router, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Any]:
    """The generator behind :meth:`Router.stream`."""
    router._budget.deposit()
    deadline = Deadline(router._clock, router.timeout_s)
    span = router._start_span()
    try:
        with trace.use_span(span, end_on_exit=False):
            plan = router._plan(span, deadline, stream=True)
            request = next(plan)
            while True:
                if isinstance(request, Req):
                    outcome: Outcome | None = _open(router, request, args, kwargs)
                else:
                    router._clock.sleep(request)
                    outcome = None
                try:
                    request = plan.send(outcome)
                except StopIteration as done:
                    opened = done.value
                    break
    except BaseException as exc:
        end_route_span(span, exc)
        raise
    (iterator, chunk, _), m, _ = opened
    state = _Committed(span, opened)
    idle = router.idle_timeout_s or router.attempt_timeout_s or math.inf
    try:
        while chunk is not DONE:
            yield chunk
            state.chunks += 1
            try:
                if router._isolate:
                    chunk = router._pool_for(m).run(_next_chunk, (iterator,), None, idle, m.what)
                else:
                    chunk = next(iterator, DONE)
            except Exception as exc:
                raise state.broke(router, exc) from exc
            if chunk is not DONE:
                state.call._on_chunk(chunk)
    except GeneratorExit:
        state.closed()
        with guard("router.stream_close"):
            # between two chunks no pull is running, so the backend's stream can be closed
            # here (an HTTP stream releases its connection)
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
        raise
    except BaseException as exc:
        state.failed(exc)
        raise
    state.done()


async def _aopen(
    router: Router, req: Req, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Outcome:
    m = req.member
    call = _start_attempt(m, req)
    start = time.perf_counter()
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
                return iterator, DONE
        iterator = iter(source)
        return iterator, next(iterator, DONE)

    try:
        timeout = _first_timeout(router, req)
        if m.backend.is_async:
            iterator, first = await await_within(open_async(), timeout, m.what)
        else:
            future = router._pool_for(m).submit(_open_stream, (fn, args, kwargs))
            try:
                iterator, first = await await_within(asyncio.wrap_future(future), timeout, m.what)
            finally:
                future.cancel()
    except BaseException as exc:
        return _open_failed(call, exc, start)
    return _opened(call, first, iterator, start)


async def _anext(router: Router, m: Member, iterator: Any, idle: float) -> Any:
    if hasattr(iterator, "__anext__"):

        async def step() -> Any:
            try:
                return await iterator.__anext__()
            except StopAsyncIteration:
                return DONE

        return await await_within(step(), idle, m.what)
    future = router._pool_for(m).submit(_next_chunk, (iterator,))
    try:
        return await await_within(asyncio.wrap_future(future), idle, m.what)
    finally:
        future.cancel()


async def astream(
    router: Router, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> AsyncIterator[Any]:
    """The async generator behind :meth:`Router.astream`."""
    router._budget.deposit()
    deadline = Deadline(router._clock, router.timeout_s)
    span = router._start_span()
    try:
        with trace.use_span(span, end_on_exit=False):
            plan = router._plan(span, deadline, stream=True)
            request = next(plan)
            while True:
                if isinstance(request, Req):
                    outcome: Outcome | None = await _aopen(router, request, args, kwargs)
                else:
                    await router._clock.asleep(request)
                    outcome = None
                try:
                    request = plan.send(outcome)
                except StopIteration as done:
                    opened = done.value
                    break
    except BaseException as exc:
        end_route_span(span, exc)
        raise
    (iterator, chunk, _), m, _ = opened
    state = _Committed(span, opened)
    idle = router.idle_timeout_s or router.attempt_timeout_s or math.inf
    try:
        while chunk is not DONE:
            yield chunk
            state.chunks += 1
            try:
                chunk = await _anext(router, m, iterator, idle)
            except Exception as exc:
                raise state.broke(router, exc) from exc
            if chunk is not DONE:
                state.call._on_chunk(chunk)
    except GeneratorExit:
        state.closed()
        with guard("router.stream_close"):
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        raise
    except BaseException as exc:
        state.failed(exc)
        raise
    state.done()
