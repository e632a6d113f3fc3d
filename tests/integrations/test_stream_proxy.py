"""capture/streams.py: the stream proxy integrations and the router wrap client streams with."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

import modelwatch
from modelwatch import lifecycle
from modelwatch.capture.streams import (
    AsyncStreamProxy,
    StreamProxy,
    amonitor_stream,
    monitor_stream,
)
from modelwatch.testing import Captured

SPAN = "chat m"
DURATION = "gen_ai.client.operation.duration"
TTFC = "gen_ai.client.operation.time_to_first_chunk"


class StreamError(Exception):
    pass


def started() -> lifecycle.Call:
    call = lifecycle.start(modelwatch.monitored(model="m", provider="p").spec)
    call.detach()
    return call


class Chunk:
    def __init__(self, text: str, usage: dict[str, int] | None = None) -> None:
        self.text = text
        self.usage = usage


class ClientStream:
    """Shaped like openai's Stream: iterable, .response, close(), a context manager."""

    def __init__(self, chunks: list[Chunk]) -> None:
        self._chunks = iter(chunks)
        self.response = "http-response"
        self.closed = False
        self.entered = False

    def __iter__(self) -> Iterator[Chunk]:
        return self

    def __next__(self) -> Chunk:
        if self.closed:
            raise StopIteration
        return next(self._chunks)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> ClientStream:
        self.entered = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClientStream:
    """Shaped like openai's AsyncStream: async iterable, ``close()`` is a coroutine."""

    def __init__(self, chunks: list[Chunk]) -> None:
        self._chunks = list(chunks)
        self.closed = False

    def __aiter__(self) -> AsyncClientStream:
        return self

    async def __anext__(self) -> Chunk:
        if self.closed or not self._chunks:
            raise StopAsyncIteration
        return self._chunks.pop(0)

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> AsyncClientStream:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


CHUNKS = [Chunk("a"), Chunk("b"), Chunk("", usage={"prompt_tokens": 5, "completion_tokens": 2})]


def span_attributes(cap: Captured) -> dict[str, Any]:
    return dict(cap.span(SPAN).attributes or {})


# --------------------------------------------------------------------------- sync


def test_exhausted_stream_ends_once_with_usage_from_chunks(modelwatch_capture: Captured) -> None:
    stream = monitor_stream(started(), ClientStream(CHUNKS))
    assert isinstance(stream, StreamProxy)
    assert modelwatch.current_call() is None
    assert [c.text for c in stream] == ["a", "b", ""]
    assert list(stream) == []  # exhausted; ending again changes nothing
    a = span_attributes(modelwatch_capture)
    assert a["gen_ai.usage.input_tokens"] == 5
    assert a["gen_ai.usage.output_tokens"] == 2
    assert "modelwatch.stream" not in a
    assert modelwatch_capture.metric_count(DURATION) == 1
    assert modelwatch_capture.metric_count(TTFC) == 1


def test_proxy_is_transparent(modelwatch_capture: Captured) -> None:
    inner = ClientStream(CHUNKS)
    stream = monitor_stream(started(), inner)
    assert stream.response == "http-response"
    assert isinstance(stream, ClientStream)
    assert stream.__wrapped__ is inner
    stream.close()


def test_close_closes_the_client_stream_and_marks_the_call(modelwatch_capture: Captured) -> None:
    inner = ClientStream(CHUNKS)
    stream = monitor_stream(started(), inner)
    assert next(stream).text == "a"
    stream.close()
    assert inner.closed
    assert span_attributes(modelwatch_capture)["modelwatch.stream"] is True
    stream.close()  # twice: still one span
    assert modelwatch_capture.metric_count(DURATION) == 1


def test_with_block_enters_and_exits_the_client_stream(modelwatch_capture: Captured) -> None:
    inner = ClientStream(CHUNKS)
    with monitor_stream(started(), inner) as stream:
        assert inner.entered
        assert next(stream).text == "a"
    assert inner.closed
    assert span_attributes(modelwatch_capture)["modelwatch.stream"] is True


def test_an_error_in_the_consumer_block_is_not_the_models(modelwatch_capture: Captured) -> None:
    with pytest.raises(KeyError), monitor_stream(started(), ClientStream(CHUNKS)) as stream:
        next(stream)
        raise KeyError("consumer bug")
    span = modelwatch_capture.span(SPAN)
    assert span.status.status_code is StatusCode.UNSET
    assert (span.attributes or {})["modelwatch.stream"] is True


def test_stream_error_ends_the_call_with_its_kind(modelwatch_capture: Captured) -> None:
    raised = StreamError("cut")

    def broken() -> Iterator[str]:
        yield "x"
        raise raised

    got: list[str] = []
    with pytest.raises(StreamError) as info:
        got.extend(monitor_stream(started(), broken()))
    assert info.value is raised
    assert got == ["x"]
    span = modelwatch_capture.span(SPAN)
    assert span.status.status_code is StatusCode.ERROR
    assert modelwatch_capture.metric_count(DURATION, {"error.type": "_OTHER"}) == 1


def test_abandoned_stream_is_ended_by_garbage_collection(modelwatch_capture: Captured) -> None:
    stream = monitor_stream(started(), iter(["a", "b"]))
    next(stream)
    del stream
    gc.collect()
    assert span_attributes(modelwatch_capture)["modelwatch.stream"] is True
    assert modelwatch_capture.metric_count(DURATION) == 1


def test_non_iterable_result_ends_the_call_at_once(modelwatch_capture: Captured) -> None:
    result = Chunk("whole", usage={"prompt_tokens": 1, "completion_tokens": 1})
    assert monitor_stream(started(), result) is result
    assert span_attributes(modelwatch_capture)["gen_ai.usage.output_tokens"] == 1


# --------------------------------------------------------------------------- async


async def test_async_stream_exhaustion_and_usage(modelwatch_capture: Captured) -> None:
    stream = amonitor_stream(started(), AsyncClientStream(CHUNKS))
    assert isinstance(stream, AsyncStreamProxy)
    assert [c.text async for c in stream] == ["a", "b", ""]
    assert span_attributes(modelwatch_capture)["gen_ai.usage.output_tokens"] == 2
    assert modelwatch_capture.metric_count(TTFC) == 1


async def test_async_close_coroutine_and_async_with(modelwatch_capture: Captured) -> None:
    inner = AsyncClientStream(CHUNKS)
    async with amonitor_stream(started(), inner) as stream:
        assert (await anext(stream)).text == "a"
    assert inner.closed
    assert span_attributes(modelwatch_capture)["modelwatch.stream"] is True

    modelwatch_capture.clear()
    inner = AsyncClientStream(CHUNKS)
    stream = amonitor_stream(started(), inner)
    await stream.close()
    assert inner.closed
    assert span_attributes(modelwatch_capture)["modelwatch.stream"] is True


async def test_async_generator_error_and_aclose(modelwatch_capture: Captured) -> None:
    async def gen() -> AsyncIterator[int]:
        yield 1
        raise StreamError("async cut")

    with pytest.raises(StreamError):
        async for _ in amonitor_stream(started(), gen()):
            pass
    assert modelwatch_capture.span(SPAN).status.status_code is StatusCode.ERROR

    modelwatch_capture.clear()
    finished: list[bool] = []

    async def endless() -> AsyncIterator[int]:
        try:
            while True:
                yield 1
        finally:
            finished.append(True)

    stream = amonitor_stream(started(), endless())
    await anext(stream)
    await stream.aclose()
    assert finished == [True]
    assert span_attributes(modelwatch_capture)["modelwatch.stream"] is True


def test_send_and_throw_on_a_wrapped_generator_count_and_end_the_call(
    modelwatch_capture: Captured,
) -> None:
    def gen() -> Iterator[str]:
        received = yield "first"
        try:
            yield f"got {received}"
        except KeyError:
            yield "caught"

    proxy = monitor_stream(started(), gen())
    assert next(proxy) == "first"
    assert proxy.send("x") == "got x"
    assert proxy.throw(KeyError("k")) == "caught"
    assert modelwatch_capture.find_spans(SPAN) == []  # still running
    with pytest.raises(StopIteration):
        next(proxy)
    (span,) = modelwatch_capture.find_spans(SPAN)
    assert span.status.status_code is StatusCode.UNSET
    assert modelwatch_capture.metric_count(TTFC) == 1


def test_throw_that_escapes_ends_the_call_as_failed(modelwatch_capture: Captured) -> None:
    def gen() -> Iterator[str]:
        yield "first"
        yield "second"

    proxy = monitor_stream(started(), gen())
    next(proxy)
    with pytest.raises(StreamError):
        proxy.throw(StreamError("cut"))
    (span,) = modelwatch_capture.find_spans(SPAN)
    assert span.status.status_code is StatusCode.ERROR


def test_send_on_a_stream_without_send_is_an_attribute_error() -> None:
    proxy = monitor_stream(started(), ClientStream([Chunk("a")]))
    with pytest.raises(AttributeError):
        proxy.send(None)
    proxy.close()
