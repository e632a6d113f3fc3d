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
from typing import Any, NoReturn

from opentelemetry import trace
from opentelemetry.trace import Span

from modelwatch import lifecycle, semconv
from modelwatch._safety import guard
from modelwatch.capture.scrub import record_exception
from modelwatch.errors import ConfigurationError, StreamInterruptedError
from modelwatch.resilience._drive import adrive, drive
from modelwatch.resilience._members import DONE, Member, Outcome, Req
from modelwatch.resilience._plan import Core
from modelwatch.resilience.breaker import Permit
from modelwatch.resilience.deadline import await_within

__all__ = ["astream", "stream"]


def _open_stream(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    iterator = iter(fn(*args, **kwargs))
    return iterator, next(iterator, DONE)


def _next_chunk(iterator: Iterator[Any]) -> Any:
    return next(iterator, DONE)


class _Committed:
    """A stream after its first chunk: the backend, its permit and its attempt call."""

    __slots__ = ("call", "chunks", "core", "member", "permit", "span", "start")

    def __init__(self, core: Core, span: Span, opened: tuple[Any, Member, Permit]) -> None:
        (_, _, self.call), self.member, self.permit = opened
        self.core = core
        self.span = span
        self.chunks = 0
        self.start = time.perf_counter()

    def broke(self, exc: BaseException) -> StreamInterruptedError:
        kind = self.core.kind_of(exc)
        self.member.breaker.record_failure(self.permit, kind, time.perf_counter() - self.start)
        self.call.fail(exc)
        with guard("router.stream_broke"):
            self.span.set_attribute(semconv.ERROR_TYPE, kind)
        return StreamInterruptedError(self.member.backend.model, self.chunks, kind)

    def closed(self) -> None:
        """The consumer stopped early: no verdict on the backend."""
        self.member.breaker.release(self.permit)
        self.call.stop(closed=True)
        with guard("router.stream_span"):
            self.span.set_attribute(semconv.MODELWATCH_STREAM, True)
            self.span.end()

    def failed(self, exc: BaseException) -> None:
        """Something other than the backend ended the stream (cancellation, our own error)."""
        if not isinstance(exc, StreamInterruptedError):
            self.member.breaker.release(self.permit)
            self.call.fail(exc)
        end_route_span(self.span, exc)

    def done(self) -> None:
        self.member.breaker.record_success(self.permit, time.perf_counter() - self.start)
        self.call.stop()
        with guard("router.stream_span"):
            self.span.end()


def end_route_span(span: Span, exc: BaseException) -> None:
    """End a route span that is not managed by a ``with`` block, with the error on it."""
    with guard("router.stream_span"):
        if span.is_recording():
            record_exception(span, exc, type(exc).__name__)  # scrubbed
        span.end()


class _Opening:
    """The attempts of a stream, up to each one's first chunk (never hedged)."""

    running = 0

    def __init__(self, core: Core, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.core = core
        self.args = args
        self.kwargs = kwargs

    def begin(self, req: Req) -> tuple[lifecycle.Call, float, float]:
        """The attempt's call, its start time and its first-chunk timeout."""
        call = lifecycle.start(req.member.spec_for(req.number))
        call.set_attribute(semconv.MODELWATCH_STREAM, True)
        timeout = req.timeout_s
        if self.core.first_chunk_timeout_s is not None:
            timeout = min(timeout, self.core.first_chunk_timeout_s)
        return call, time.perf_counter(), timeout

    @staticmethod
    def opened(call: lifecycle.Call, first: Any, it: Any, start: float, req: Req) -> Outcome:
        call.detach()
        if first is not DONE:
            call.record_chunk(first)
        return True, (it, first, call), time.perf_counter() - start, req

    @staticmethod
    def open_failed(call: lifecycle.Call, exc: BaseException, start: float, req: Req) -> Outcome:
        call.fail(exc)
        return False, exc, time.perf_counter() - start, req

    def start(self, req: Req) -> NoReturn:
        raise AssertionError("streams are not hedged")

    def abandon(self) -> None:
        """Nothing runs concurrently while a stream opens."""


class _SyncOpening(_Opening):
    def run(self, req: Req) -> Outcome:
        """Start a sync stream attempt and wait for its first chunk (or its end)."""
        m = req.member
        call, start, timeout = self.begin(req)
        try:
            if m.backend.is_async:
                raise ConfigurationError(
                    f"backend {m.backend.name!r} is async: use router.astream()"
                )
            if self.core.isolate_sync:
                it, first = self.core.pool_for(m).run(
                    _open_stream, (m.backend.fn, self.args, self.kwargs), None, timeout, m.what
                )
            else:
                it, first = _open_stream(m.backend.fn, self.args, self.kwargs)
        except BaseException as exc:
            return self.open_failed(call, exc, start, req)
        return self.opened(call, first, it, start, req)

    def next_event(self, due: float | None) -> NoReturn:
        raise AssertionError("streams are not hedged")


class _AsyncOpening(_Opening):
    async def run(self, req: Req) -> Outcome:
        """Start an async (or sync, on the pool) stream attempt, up to its first chunk."""
        m = req.member
        call, start, timeout = self.begin(req)
        fn, args, kwargs = m.backend.fn, self.args, self.kwargs

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
            if m.backend.is_async:
                it, first = await await_within(open_async(), timeout, m.what)
            else:
                future = self.core.pool_for(m).submit(_open_stream, (fn, args, kwargs))
                try:
                    it, first = await await_within(asyncio.wrap_future(future), timeout, m.what)
                finally:
                    future.cancel()
        except BaseException as exc:
            return self.open_failed(call, exc, start, req)
        return self.opened(call, first, it, start, req)

    async def next_event(self, due: float | None) -> NoReturn:
        raise AssertionError("streams are not hedged")

    async def abandon(self) -> None:  # type: ignore[override]
        """Nothing runs concurrently while a stream opens."""


def _idle(core: Core) -> float:
    return core.idle_timeout_s or core.attempt_timeout_s or math.inf


def stream(core: Core, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Any]:
    """The generator behind :meth:`Router.stream`."""
    route, deadline = core.begin(stream=True)
    span = route.span
    try:
        with trace.use_span(span, end_on_exit=False):
            plan = core.plan(route, deadline, stream=True)
            opened = drive(plan, _SyncOpening(core, args, kwargs), core.clock.sleep)
    except BaseException as exc:
        end_route_span(span, exc)
        raise
    (iterator, chunk, _), m, _ = opened
    state = _Committed(core, span, opened)
    idle = _idle(core)
    try:
        while chunk is not DONE:
            yield chunk
            state.chunks += 1
            try:
                if core.isolate_sync:
                    chunk = core.pool_for(m).run(_next_chunk, (iterator,), None, idle, m.what)
                else:
                    chunk = next(iterator, DONE)
            except Exception as exc:
                raise state.broke(exc) from exc
            if chunk is not DONE:
                state.call.record_chunk(chunk)
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


async def _anext(core: Core, m: Member, iterator: Any, idle: float) -> Any:
    if hasattr(iterator, "__anext__"):

        async def step() -> Any:
            try:
                return await iterator.__anext__()
            except StopAsyncIteration:
                return DONE

        return await await_within(step(), idle, m.what)
    future = core.pool_for(m).submit(_next_chunk, (iterator,))
    try:
        return await await_within(asyncio.wrap_future(future), idle, m.what)
    finally:
        future.cancel()


async def astream(core: Core, args: tuple[Any, ...], kwargs: dict[str, Any]) -> AsyncIterator[Any]:
    """The async generator behind :meth:`Router.astream`."""
    route, deadline = core.begin(stream=True)
    span = route.span
    try:
        with trace.use_span(span, end_on_exit=False):
            plan = core.plan(route, deadline, stream=True)
            opened = await adrive(plan, _AsyncOpening(core, args, kwargs), core.clock.asleep)
    except BaseException as exc:
        end_route_span(span, exc)
        raise
    (iterator, chunk, _), m, _ = opened
    state = _Committed(core, span, opened)
    idle = _idle(core)
    try:
        while chunk is not DONE:
            yield chunk
            state.chunks += 1
            try:
                chunk = await _anext(core, m, iterator, idle)
            except Exception as exc:
                raise state.broke(exc) from exc
            if chunk is not DONE:
                state.call.record_chunk(chunk)
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
