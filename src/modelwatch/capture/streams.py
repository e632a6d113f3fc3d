"""Proxies for the streams model clients return, so a streamed model call is one monitored call.

A client method called with ``stream=True`` (``InferenceClient.text_generation``,
``chat_completion``, openai's ``Stream``...) usually sends the request, then returns an
iterator the caller drains later, maybe in another function. The call must therefore outlive
the method: :func:`monitor_stream` ends it when the stream does.

Protocol for callers (integrations, the router), on the public lifecycle::

    call = lifecycle.start(spec)
    try:
        stream = client_method(...)          # request sent, stream returned
    except BaseException as exc:
        call.fail(exc)
        raise
    return lifecycle.wrap_stream(call, stream)   # or wrap_async_stream for async iterators

:func:`wrap_stream` detaches the call (it is never current across the consumer's loop). The
proxy forwards every attribute and method of the wrapped stream (``response``, ``close``,
context-manager use...), calls ``call.record_chunk`` per chunk (time to first chunk, usage from
chunks that carry it), and ends the call exactly once: at exhaustion, on an error raised by the
stream, on ``close()``/``aclose()``/``with``-exit, or when the proxy is garbage collected
unfinished (then ``modelwatch.stream=true`` marks the span as cut short).

Hooks let an integration follow the stream without writing a proxy: ``on_chunk(call, chunk)``
after each chunk (accumulate text, finish reasons), ``on_end(call)`` just before the call ends
as a success or cut short, ``on_error(call, exc)`` just before it ends as a failure. Hooks run
guarded: one that raises is reported and the stream goes on.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypedDict, TypeVar

import wrapt

from modelwatch._safety import guard, report_internal_error
from modelwatch.capture.call import Call

if TYPE_CHECKING:
    from typing_extensions import Unpack

T = TypeVar("T")

__all__ = [
    "AsyncStreamProxy",
    "StreamHooks",
    "StreamProxy",
    "amonitor_stream",
    "monitor_stream",
    "wrap_async_stream",
    "wrap_stream",
]

ChunkHook = Callable[[Call, Any], None]
EndHook = Callable[[Call], None]
ErrorHook = Callable[[Call, BaseException], None]


class StreamHooks(NamedTuple):
    """The optional callbacks of :func:`wrap_stream` (see the module docstring)."""

    on_chunk: ChunkHook | None = None
    on_end: EndHook | None = None
    on_error: ErrorHook | None = None


def _finish(
    call: Call,
    hooks: StreamHooks | None,
    exc: BaseException | None = None,
    *,
    closed: bool = False,
) -> None:
    if hooks is not None:
        with guard("stream_hook"):
            if exc is not None:
                if hooks.on_error is not None:
                    hooks.on_error(call, exc)
            elif hooks.on_end is not None:
                hooks.on_end(call)
    with guard("stream_end"):
        if exc is not None:
            call.fail(exc)
        else:
            call.stop(closed=closed)


def _chunk(call: Call, hooks: StreamHooks | None, item: Any) -> None:
    call.record_chunk(item)
    if hooks is not None and hooks.on_chunk is not None:
        try:
            hooks.on_chunk(call, item)
        except Exception as exc:  # inline: a guard() context manager per chunk costs ~1 µs
            report_internal_error("stream_hook", exc)


def _abandoned(call: Call, hooks: StreamHooks | None) -> None:
    """Finalizer: the proxy was collected before the stream ended."""
    _finish(call, hooks, closed=True)


class _EndsOnce(wrapt.ObjectProxy[Any]):
    """What both stream proxies share: the call, its hooks, and the finalizer that ends the
    call if the proxy is collected first; :meth:`_self_end` ends it exactly once."""

    _self_iterator: Any  # the sync or async iterator, once iteration starts

    def __init__(self, wrapped: Any, call: Call, hooks: StreamHooks | None = None) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_hooks = hooks
        self._self_iterator = None
        self._self_finalizer = weakref.finalize(self, _abandoned, call, hooks)
        self._self_finalizer.atexit = False

    def _self_end(self, exc: BaseException | None = None, *, closed: bool = False) -> None:
        if self._self_finalizer.detach() is not None:
            _finish(self._self_call, self._self_hooks, exc, closed=closed)


class StreamProxy(_EndsOnce, Generic[T]):
    """A transparent proxy around a sync stream that ends its :class:`Call` exactly once."""

    _self_iterator: Iterator[T] | None

    def __iter__(self) -> StreamProxy[T]:
        return self

    def __next__(self) -> T:
        iterator = self._self_iterator
        if iterator is None:
            iterator = self._self_iterator = iter(self.__wrapped__)
        try:
            item = next(iterator)
        except StopIteration:
            self._self_end()
            raise
        except GeneratorExit:
            self._self_end(closed=True)
            raise
        except BaseException as exc:
            self._self_end(exc)
            raise
        _chunk(self._self_call, self._self_hooks, item)
        return item

    def send(self, value: Any) -> T:
        """``send()`` to a wrapped generator, counted as a chunk like ``next()``."""
        return self._self_step(self.__wrapped__.send, value)

    def throw(self, *args: Any) -> T:
        """``throw()`` into a wrapped generator; its outcome ends the call as ``next()`` would."""
        return self._self_step(self.__wrapped__.throw, *args)

    def _self_step(self, step: Any, *args: Any) -> T:
        try:
            item: T = step(*args)
        except StopIteration:
            self._self_end()
            raise
        except BaseException as exc:
            self._self_end(exc)
            raise
        _chunk(self._self_call, self._self_hooks, item)
        return item

    def close(self) -> None:
        """Close the wrapped stream (if it can be closed) and end the call as cut short."""
        try:
            close = getattr(self.__wrapped__, "close", None)
            if close is not None:
                close()
        finally:
            self._self_end(closed=True)

    def __enter__(self) -> StreamProxy[T]:
        enter = getattr(self.__wrapped__, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            exit_ = getattr(self.__wrapped__, "__exit__", None)
            if exit_ is not None:
                return bool(exit_(exc_type, exc, tb))
            close = getattr(self.__wrapped__, "close", None)
            if close is not None:
                close()
            return None
        finally:
            # an error raised by the consumer's block is not the model's: the stream was cut
            self._self_end(closed=True)

    def __repr__(self) -> str:
        return f"<modelwatch stream of {self.__wrapped__!r}>"


class AsyncStreamProxy(_EndsOnce, Generic[T]):
    """A transparent proxy around an async stream that ends its :class:`Call` exactly once."""

    _self_iterator: AsyncIterator[T] | None

    def __aiter__(self) -> AsyncStreamProxy[T]:
        return self

    async def __anext__(self) -> T:
        iterator = self._self_iterator
        if iterator is None:
            iterator = self._self_iterator = aiter(self.__wrapped__)
        try:
            item = await anext(iterator)
        except StopAsyncIteration:
            self._self_end()
            raise
        except GeneratorExit:
            self._self_end(closed=True)
            raise
        except BaseException as exc:
            self._self_end(exc)
            raise
        _chunk(self._self_call, self._self_hooks, item)
        return item

    async def _self_close_wrapped(self) -> None:
        wrapped = self.__wrapped__
        for name in ("aclose", "close"):
            method = getattr(wrapped, name, None)
            if method is not None:
                result = method()
                if hasattr(result, "__await__"):
                    await result
                return

    async def aclose(self) -> None:
        """Close the wrapped stream (``aclose`` or ``close``) and end the call as cut short."""
        try:
            await self._self_close_wrapped()
        finally:
            self._self_end(closed=True)

    async def close(self) -> None:
        """Alias of :meth:`aclose` (openai's ``AsyncStream.close`` is a coroutine too)."""
        await self.aclose()

    async def __aenter__(self) -> AsyncStreamProxy[T]:
        enter = getattr(self.__wrapped__, "__aenter__", None)
        if enter is not None:
            await enter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            exit_ = getattr(self.__wrapped__, "__aexit__", None)
            if exit_ is not None:
                return bool(await exit_(exc_type, exc, tb))
            await self._self_close_wrapped()
            return None
        finally:
            # an error raised by the consumer's block is not the model's: the stream was cut
            self._self_end(closed=True)

    def __repr__(self) -> str:
        return f"<modelwatch async stream of {self.__wrapped__!r}>"


class _HookArgs(TypedDict, total=False):
    on_chunk: ChunkHook | None
    on_end: EndHook | None
    on_error: ErrorHook | None


def _wrap(
    call: Call, stream: Any, hooks: _HookArgs, proxy: type[Any], marks: tuple[str, str]
) -> Any:
    found = StreamHooks(**hooks)
    for name, hook in zip(StreamHooks._fields, found, strict=True):
        if hook is not None and not callable(hook):
            raise TypeError(f"{name} must be callable or None, got {hook!r}")
    used = found if any(h is not None for h in found) else None
    call.detach()
    call.set_request(stream=True)
    if not hasattr(stream, marks[0]) and not hasattr(stream, marks[1]):
        _finish_with(call, used, stream)
        return stream
    return proxy(stream, call, used)


def wrap_stream(call: Call, stream: Any, **hooks: Unpack[_HookArgs]) -> Any:
    """Return ``stream`` wrapped so ``call`` follows it and ends exactly once.

    Detaches ``call`` first. A ``stream`` that is not iterable (the client answered without
    streaming) ends the call now, with usage read from it, and is returned unchanged.
    Hooks (keyword arguments ``on_chunk``, ``on_end``, ``on_error``): see the module docstring.
    """
    return _wrap(call, stream, hooks, StreamProxy, ("__iter__", "__next__"))


def wrap_async_stream(call: Call, stream: Any, **hooks: Unpack[_HookArgs]) -> Any:
    """The async twin of :func:`wrap_stream`, for async iterators (``__aiter__``/``__anext__``)."""
    return _wrap(call, stream, hooks, AsyncStreamProxy, ("__aiter__", "__anext__"))


def _finish_with(call: Call, hooks: StreamHooks | None, result: Any) -> None:
    """End a call whose "stream" turned out to be a whole answer (usage read from it)."""
    if hooks is not None and hooks.on_chunk is not None:
        with guard("stream_hook"):
            hooks.on_chunk(call, result)
    if hooks is not None and hooks.on_end is not None:
        with guard("stream_hook"):
            hooks.on_end(call)
    with guard("stream_end"):
        call.stop(result)


#: The names the router used before the public lifecycle; same functions.
monitor_stream = wrap_stream
amonitor_stream = wrap_async_stream
