"""Streams (generators and async generators): first chunk timed, span ends exactly once on
every exit path, and the span is never current across a yield."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import modelwatch
from modelwatch.testing import Captured

SPAN = "chat m"
TTFC = "gen_ai.client.operation.time_to_first_chunk"
DURATION = "gen_ai.client.operation.duration"

stream = modelwatch.monitored(model="m", provider="p")


@stream
def tokens(n: int, fail_at: int | None = None) -> Iterator[str]:
    for i in range(n):
        if i == fail_at:
            raise ConnectionResetError("stream cut")
        yield f"t{i}"


@stream
async def atokens(n: int, fail_at: int | None = None) -> AsyncIterator[str]:
    for i in range(n):
        await asyncio.sleep(0)
        if i == fail_at:
            raise ConnectionResetError("stream cut")
        yield f"t{i}"


def _ended_once(cap: Captured) -> None:
    assert len(cap.find_spans(SPAN)) == 1
    assert cap.metric_count(DURATION) == 1


def test_exhaustion(modelwatch_capture: Captured) -> None:
    assert list(tokens(3)) == ["t0", "t1", "t2"]
    _ended_once(modelwatch_capture)
    assert modelwatch_capture.metric_count(TTFC) == 1
    span = modelwatch_capture.span(SPAN)
    assert [e.name for e in span.events] == ["gen_ai.first_chunk"]
    assert span.status.status_code is StatusCode.UNSET


def test_error_mid_stream(modelwatch_capture: Captured) -> None:
    got: list[str] = []
    with pytest.raises(ConnectionResetError):
        for item in tokens(3, fail_at=2):
            got.append(item)
    assert got == ["t0", "t1"]
    _ended_once(modelwatch_capture)
    span = modelwatch_capture.span(SPAN)
    assert span.attributes is not None
    assert span.attributes["error.type"] == "unavailable"


def test_early_break_and_close(modelwatch_capture: Captured) -> None:
    gen = tokens(10)
    for item in gen:
        if item == "t1":
            break
    assert modelwatch_capture.find_spans(SPAN) == []  # not ended until closed or collected
    gen.close()
    gen.close()  # idempotent
    _ended_once(modelwatch_capture)
    span = modelwatch_capture.span(SPAN)
    assert span.attributes is not None
    assert span.attributes["modelwatch.stream"] is True
    assert span.status.status_code is StatusCode.UNSET


def test_garbage_collected_abandoned_stream(modelwatch_capture: Captured) -> None:
    gen = tokens(10)
    assert next(gen) == "t0"
    del gen
    gc.collect()
    _ended_once(modelwatch_capture)


def test_never_started_generator_emits_nothing(modelwatch_capture: Captured) -> None:
    gen = tokens(3)
    del gen
    gc.collect()
    assert modelwatch_capture.find_spans(SPAN) == []


def test_send_and_throw_are_forwarded(modelwatch_capture: Captured) -> None:
    @stream
    def echo() -> Iterator[object]:
        received = yield "ready"
        try:
            yield received
        except KeyError as exc:
            yield f"caught {exc.args[0]}"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("hello") == "hello"
    assert gen.throw(KeyError("k")) == "caught k"
    with pytest.raises(StopIteration):
        next(gen)
    _ended_once(modelwatch_capture)


def test_return_value_of_generator_is_kept() -> None:
    @stream
    def gen() -> Iterator[int]:
        yield 1
        return "done"  # type: ignore[misc]

    g = gen()
    next(g)
    with pytest.raises(StopIteration) as stop:
        next(g)
    assert stop.value.value == "done"


def test_span_is_current_inside_the_generator_but_not_across_yield(
    modelwatch_capture: Captured,
) -> None:
    inside: list[bool] = []

    @stream
    def gen() -> Iterator[int]:
        for i in range(2):
            inside.append(modelwatch.current_call() is not None)
            inside.append(trace.get_current_span().is_recording())
            yield i

    for _ in gen():
        assert modelwatch.current_call() is None
        assert not trace.get_current_span().is_recording()
    assert inside == [True, True, True, True]


async def test_async_exhaustion(modelwatch_capture: Captured) -> None:
    assert [t async for t in atokens(3)] == ["t0", "t1", "t2"]
    _ended_once(modelwatch_capture)
    assert modelwatch_capture.metric_count(TTFC) == 1


async def test_async_error(modelwatch_capture: Captured) -> None:
    with pytest.raises(ConnectionResetError):
        async for _ in atokens(3, fail_at=1):
            pass
    _ended_once(modelwatch_capture)
    assert modelwatch_capture.span(SPAN).attributes["error.type"] == "unavailable"  # type: ignore[index]


async def test_async_aclose_after_break(modelwatch_capture: Captured) -> None:
    agen = atokens(10)
    async for item in agen:
        if item == "t1":
            break
    await agen.aclose()
    await agen.aclose()
    _ended_once(modelwatch_capture)
    assert modelwatch_capture.span(SPAN).attributes["modelwatch.stream"] is True  # type: ignore[index]


def test_async_abandoned_stream_ends_through_the_loops_finalizer(
    modelwatch_capture: Captured,
) -> None:
    async def main() -> None:
        agen = atokens(10)
        assert await agen.__anext__() == "t0"
        del agen
        gc.collect()
        await asyncio.sleep(0)  # the loop's asyncgen finalizer schedules aclose()
        await asyncio.sleep(0)

    asyncio.run(main())
    _ended_once(modelwatch_capture)


async def test_async_cancellation_is_recorded_as_cancelled(modelwatch_capture: Captured) -> None:
    started = asyncio.Event()

    @stream
    async def slow() -> AsyncIterator[int]:
        yield 1
        started.set()
        await asyncio.Event().wait()
        yield 2

    async def consume() -> None:
        async for _ in slow():
            pass

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _ended_once(modelwatch_capture)
    assert modelwatch_capture.span(SPAN).attributes["error.type"] == "cancelled"  # type: ignore[index]


def test_usage_is_picked_up_from_stream_chunks(modelwatch_capture: Captured) -> None:
    @modelwatch.monitored(model="gpt-4o-mini", provider="openai")
    def chunks() -> Iterator[dict[str, object]]:
        yield {"choices": [{"delta": {"content": "hi"}}], "model": "gpt-4o-mini-2024-07-18"}
        yield {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3}}

    assert len(list(chunks())) == 2
    span = modelwatch_capture.span("chat gpt-4o-mini")
    assert span.attributes is not None
    assert span.attributes["gen_ai.usage.input_tokens"] == 12
    assert span.attributes["gen_ai.usage.output_tokens"] == 3
    assert span.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert modelwatch_capture.metric_sum("gen_ai.client.token.usage") == 15
