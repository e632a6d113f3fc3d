"""Proxies for the streams model clients return, so a streamed model call is one monitored call.

A client method called with ``stream=True`` (``InferenceClient.text_generation``,
``chat_completion``, openai's ``Stream``...) usually sends the request, then returns an
iterator the caller drains later, maybe in another function. The call must therefore outlive
the method: :func:`monitor_stream` ends it when the stream does.

Protocol for callers (integrations, the router)::

    call = start_call(spec)
    try:
        stream = client_method(...)          # request sent, stream returned
    except BaseException as exc:
        call._detach(); call._end(exc); raise
    call._detach()                           # never current across the consumer's loop
    return monitor_stream(call, stream)      # or amonitor_stream for async iterators

The proxy forwards every attribute and method of the wrapped stream (``response``, ``close``,
context-manager use...), calls ``call._on_chunk`` per chunk (time to first chunk, usage from
chunks that carry it), and ends the call exactly once: at exhaustion, on an error raised by the
stream, on ``close()``/``aclose()``/``with``-exit, or when the proxy is garbage collected
unfinished (then ``modelwatch.stream=true`` marks the span as cut short).
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

import wrapt

from modelwatch._safety import guard, report_internal_error
from modelwatch.capture.call import Call

T = TypeVar("T")

__all__ = ["AsyncStreamProxy", "StreamProxy", "amonitor_stream", "monitor_stream"]


def _finish(call: Call, exc: BaseException | None = None, *, closed: bool = False) -> None:
    with guard("stream_end"):
        call._end(exc, stream_closed=closed)


def _chunk(call: Call, item: Any) -> None:
    try:
        call._on_chunk(item)
    except Exception as exc:  # inline: a guard() context manager per chunk costs ~1 µs
        report_internal_error("stream_chunk", exc)


def _abandoned(call: Call) -> None:
    """Finalizer: the proxy was collected before the stream ended."""
    _finish(call, closed=True)


class StreamProxy(wrapt.ObjectProxy[Any], Generic[T]):
    """A transparent proxy around a sync stream that ends its :class:`Call` exactly once."""

    def __init__(self, wrapped: Any, call: Call) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_iterator: Iterator[T] | None = None
        self._self_finalizer = weakref.finalize(self, _abandoned, call)
        self._self_finalizer.atexit = False

    def _self_end(self, exc: BaseException | None = None, *, closed: bool = False) -> None:
        self._self_finalizer.detach()
        _finish(self._self_call, exc, closed=closed)

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
        _chunk(self._self_call, item)
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
        _chunk(self._self_call, item)
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


class AsyncStreamProxy(wrapt.ObjectProxy[Any], Generic[T]):
    """A transparent proxy around an async stream that ends its :class:`Call` exactly once."""

    def __init__(self, wrapped: Any, call: Call) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_iterator: AsyncIterator[T] | None = None
        self._self_finalizer = weakref.finalize(self, _abandoned, call)
        self._self_finalizer.atexit = False

    def _self_end(self, exc: BaseException | None = None, *, closed: bool = False) -> None:
        self._self_finalizer.detach()
        _finish(self._self_call, exc, closed=closed)

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
        _chunk(self._self_call, item)
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


def monitor_stream(call: Call, stream: Any) -> Any:
    """Return ``stream`` wrapped so ``call`` follows it (see the module docstring).

    ``call`` must already be detached from the current context. If ``stream`` is not
    iterable the call is ended now and ``stream`` is returned unchanged.
    """
    if not hasattr(stream, "__iter__") and not hasattr(stream, "__next__"):
        with guard("usage"):
            call._usage_from_result(stream)
        _finish(call)
        return stream
    return StreamProxy(stream, call)


def amonitor_stream(call: Call, stream: Any) -> Any:
    """Like :func:`monitor_stream` for async iterators (``__aiter__``/``__anext__``)."""
    if not hasattr(stream, "__aiter__") and not hasattr(stream, "__anext__"):
        with guard("usage"):
            call._usage_from_result(stream)
        _finish(call)
        return stream
    return AsyncStreamProxy(stream, call)
