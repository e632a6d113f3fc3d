"""One object that is a decorator for every call shape and a (sync and async) context manager.

:class:`Monitor` is the mechanism behind :class:`modelwatch.monitored` and
:class:`modelwatch.agent_step`: they differ only in the :class:`CallSpec` they build.

As a decorator it dispatches once, at decoration, on the function's shape (plain, coroutine,
generator, async generator; methods, classmethods and staticmethods through wrapt), and keeps
the signature, ``__wrapped__`` and ``inspect.iscoroutinefunction``/``isasyncgenfunction``.
Arguments are bound exactly when the undecorated function would bind them, so a wrong call
raises where it always did. Return values and exception objects pass through untouched.

Generators: the call starts at the first ``next()``, the span is current only while the
generator's own code runs (never across a ``yield``), the first chunk is timed, and the call
ends exactly once on exhaustion, error, ``close()``/``aclose()``, early ``break`` or garbage
collection of the abandoned generator.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, TypeVar, overload

import wrapt
from opentelemetry import context as otel_context

from modelwatch.capture.call import _CURRENT, Call, CallSpec, start_call

F = TypeVar("F", bound=Callable[..., Any])


def _run_sync(spec: CallSpec, wrapped: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    call = start_call(spec)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        call.fail(exc)
        raise
    call.stop(result)
    return result


async def _run_async(spec: CallSpec, coro: Awaitable[Any]) -> Any:
    call = start_call(spec)
    try:
        result = await coro
    except BaseException as exc:
        call.fail(exc)
        raise
    call.stop(result)
    return result


def _step_context(call: Call) -> tuple[otel_context.Context, Call]:
    ctx = otel_context.get_current()
    call.detach()
    if call.model is not None:  # a monitored generator is a streamed model call
        call.set_request(stream=True)
    return ctx, call


def _drive(spec: CallSpec, gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    ctx, call = _step_context(start_call(spec))
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        token = otel_context.attach(ctx)
        call_token = _CURRENT.set(call)
        try:
            if to_throw is not None:
                thrown, to_throw = to_throw, None
                item = gen.throw(thrown)
            else:
                item = gen.send(to_send)
        except StopIteration as stop:
            call.stop()
            return stop.value
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            _CURRENT.reset(call_token)
            otel_context.detach(token)
        call.record_chunk(item)
        try:
            to_send = yield item
        except GeneratorExit:
            try:
                gen.close()
            finally:
                call.stop(closed=True)
            raise
        except BaseException as exc:
            to_send, to_throw = None, exc


async def _adrive(spec: CallSpec, agen: AsyncGenerator[Any, Any]) -> AsyncGenerator[Any, Any]:
    ctx, call = _step_context(start_call(spec))
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        token = otel_context.attach(ctx)
        call_token = _CURRENT.set(call)
        try:
            if to_throw is not None:
                thrown, to_throw = to_throw, None
                item = await agen.athrow(thrown)
            else:
                item = await agen.asend(to_send)
        except StopAsyncIteration:
            call.stop()
            return
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            _CURRENT.reset(call_token)
            otel_context.detach(token)
        call.record_chunk(item)
        try:
            to_send = yield item
        except GeneratorExit:
            try:
                await agen.aclose()
            finally:
                call.stop(closed=True)
            raise
        except BaseException as exc:
            to_send, to_throw = None, exc


def _shape_of(fn: Any) -> str:
    target = fn.__func__ if isinstance(fn, (classmethod, staticmethod)) else fn
    if inspect.isasyncgenfunction(target):
        return "asyncgen"
    if inspect.iscoroutinefunction(target):
        return "async"
    if inspect.isgeneratorfunction(target):
        return "gen"
    return "sync"


class Monitor:
    """Decorator and context manager around a :class:`CallSpec` (see module docstring)."""

    __slots__ = ("_spec",)

    _spec: CallSpec

    @property
    def spec(self) -> CallSpec:
        """The :class:`CallSpec` every call of this declaration starts from (to drive calls
        by hand with :func:`modelwatch.lifecycle.start`)."""
        return self._spec

    @overload
    def __call__(self, fn: F) -> F: ...
    @overload
    def __call__(self, fn: classmethod[Any, Any, Any]) -> classmethod[Any, Any, Any]: ...

    def __call__(self, fn: Any) -> Any:
        """Decorate ``fn``; any call shape, including methods, classmethods, staticmethods."""
        target = fn.__func__ if isinstance(fn, (classmethod, staticmethod)) else fn
        if not callable(target):
            raise TypeError(
                f"{type(self).__name__}(...) decorates functions; got {type(fn).__name__}"
            )
        spec = self._spec
        shape = _shape_of(fn)
        if shape == "async":

            def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                return _run_async(spec, wrapped(*args, **kwargs))

        elif shape == "gen":

            def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                return _drive(spec, wrapped(*args, **kwargs))

        elif shape == "asyncgen":

            def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                return _adrive(spec, wrapped(*args, **kwargs))

        else:

            def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                return _run_sync(spec, wrapped, args, kwargs)

        return wrapt.FunctionWrapper(fn, wrapper)

    # ------------------------------------------------------------- context manager
    def __enter__(self) -> Call:
        return start_call(self._spec)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        call = _CURRENT.get()
        if call is None or call._spec is not self._spec:
            return
        if isinstance(exc, GeneratorExit):
            call.stop(closed=True)
        elif exc is not None:
            call.fail(exc)
        else:
            call.stop()

    async def __aenter__(self) -> Call:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
