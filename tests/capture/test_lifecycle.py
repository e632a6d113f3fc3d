"""modelwatch.lifecycle: calls driven by hand emit what decorated calls emit, end exactly once,
follow streams through hooks, and report finished calls to listeners. Sync and async mirrored."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import modelwatch
from modelwatch import lifecycle, semconv
from modelwatch.capture import _record
from modelwatch.capture._telemetry import use_providers
from modelwatch.testing import Captured

DURATION = "gen_ai.client.operation.duration"
SPEC = lifecycle.model_spec(model="gpt-4o-mini", provider="openai", server_address="h:8080")
ANSWER = {"usage": {"prompt_tokens": 7, "completion_tokens": 3}, "model": "gpt-4o-mini-2024"}


class Boom(Exception):
    pass


@pytest.fixture
def records() -> Iterator[list[lifecycle.CallRecord]]:
    got: list[lifecycle.CallRecord] = []
    lifecycle.add_listener(got.append)
    yield got
    lifecycle.remove_listener(got.append)
    assert got.append not in _record.LISTENERS  # (the baselines' listener may be there)


# ------------------------------------------------------------------ start / stop / fail
def test_start_stop_records_usage_span_and_one_metric(modelwatch_capture: Captured) -> None:
    call = lifecycle.start(SPEC)
    assert modelwatch.current_call() is call
    call.stop(ANSWER)
    assert modelwatch.current_call() is None
    span = modelwatch_capture.span("chat gpt-4o-mini")
    assert span.attributes is not None
    assert span.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 7
    assert span.attributes[semconv.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024"
    assert span.attributes[semconv.SERVER_PORT] == 8080
    assert modelwatch_capture.metric_count(DURATION) == 1


async def test_async_start_stop_records_usage_span_and_one_metric(
    modelwatch_capture: Captured,
) -> None:
    call = lifecycle.start(SPEC)
    await asyncio.sleep(0)
    assert modelwatch.current_call() is call
    call.stop(ANSWER)
    assert modelwatch.current_call() is None
    span = modelwatch_capture.span("chat gpt-4o-mini")
    assert span.attributes is not None
    assert span.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    assert modelwatch_capture.metric_count(DURATION) == 1


def test_fail_records_error_without_deprecated_attributes(modelwatch_capture: Captured) -> None:
    call = lifecycle.start(SPEC)
    call.fail(TimeoutError("slow"))
    call.stop(ANSWER)  # after the end: nothing
    call.fail(Boom())
    (span,) = modelwatch_capture.spans
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes[semconv.ERROR_TYPE] == "timeout"
    assert semconv.GEN_AI_USAGE_INPUT_TOKENS not in span.attributes
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes is not None
    assert "exception.escaped" not in event.attributes
    assert modelwatch_capture.metric_count(DURATION) == 1
    assert modelwatch_capture.metric_count(DURATION, {semconv.ERROR_TYPE: "timeout"}) == 1


async def test_async_fail_records_error_once(modelwatch_capture: Captured) -> None:
    call = lifecycle.start(SPEC)
    try:
        await asyncio.wait_for(asyncio.sleep(1), timeout=0)
    except TimeoutError as exc:
        call.fail(exc)
    call.stop()
    (span,) = modelwatch_capture.spans
    assert span.attributes is not None
    assert span.attributes[semconv.ERROR_TYPE] == "timeout"
    assert modelwatch_capture.metric_count(DURATION) == 1


def test_stop_without_result_reads_no_usage(modelwatch_capture: Captured) -> None:
    seen: list[Any] = []
    spec = lifecycle.model_spec(model="m", provider="p", usage=seen.append)
    lifecycle.start(spec).stop()
    lifecycle.start(spec).stop(None)
    assert seen == [None]  # stop() has no result; stop(None) hands None to usage=


def test_set_request_and_response_are_span_attributes(modelwatch_capture: Captured) -> None:
    call = lifecycle.start(SPEC)
    call.set_request(
        temperature=0.5,
        max_tokens=64,
        top_p=1,
        top_k=40,
        seed=7,
        stop_sequences="END",
        frequency_penalty=0.1,
        presence_penalty=-0.2,
        choice_count=2,
        stream=False,
        output_type="json",
        conversation_id="conv-1",
    )
    call.set_request(max_tokens="many", seed=True, temperature=None)  # type: ignore[arg-type]
    call.set_response(response_id="chatcmpl-1", finish_reasons=["stop", "length"], model="x")
    call.stop()
    span = modelwatch_capture.span("chat gpt-4o-mini")
    assert span.attributes is not None
    a = dict(span.attributes)
    assert a[semconv.GEN_AI_REQUEST_TEMPERATURE] == 0.5
    assert a[semconv.GEN_AI_REQUEST_MAX_TOKENS] == 64
    assert a[semconv.GEN_AI_REQUEST_TOP_P] == 1.0
    assert a[semconv.GEN_AI_REQUEST_TOP_K] == 40
    assert a[semconv.GEN_AI_REQUEST_SEED] == 7
    assert a[semconv.GEN_AI_REQUEST_STOP_SEQUENCES] == ("END",)
    assert a[semconv.GEN_AI_REQUEST_FREQUENCY_PENALTY] == 0.1
    assert a[semconv.GEN_AI_REQUEST_PRESENCE_PENALTY] == -0.2
    assert a[semconv.GEN_AI_REQUEST_CHOICE_COUNT] == 2
    assert a[semconv.GEN_AI_REQUEST_STREAM] is False
    assert a[semconv.GEN_AI_OUTPUT_TYPE] == "json"
    assert a[semconv.GEN_AI_CONVERSATION_ID] == "conv-1"
    assert a[semconv.GEN_AI_RESPONSE_ID] == "chatcmpl-1"
    assert a[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop", "length")
    assert a[semconv.GEN_AI_RESPONSE_MODEL] == "x"
    (point,) = modelwatch_capture.metric_points(DURATION)
    assert semconv.GEN_AI_REQUEST_TEMPERATURE not in point.attributes


def test_embeddings_request_attributes(modelwatch_capture: Captured) -> None:
    spec = lifecycle.model_spec(
        model="text-embedding-3-small", provider="openai", operation="embeddings"
    )
    call = lifecycle.start(spec)
    call.set_request(encoding_formats=["float"], dimension_count=256)
    call.stop()
    span = modelwatch_capture.span("embeddings text-embedding-3-small")
    assert span.attributes is not None
    assert span.attributes[semconv.GEN_AI_REQUEST_ENCODING_FORMATS] == ("float",)
    assert span.attributes[semconv.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == 256


def test_model_spec_validates_like_monitored() -> None:
    with pytest.raises(ValueError, match=r"model_spec\(\): model"):
        lifecycle.model_spec(model="", provider="p")
    with pytest.raises(ValueError, match=r"agent_spec\(\): provider"):
        lifecycle.agent_spec("a", provider="")
    assert modelwatch.monitored(model="m", provider="p").spec.span_name == "chat m"


# ------------------------------------------------------------------ agent steps
def test_agent_step_provider_on_span_not_metric(modelwatch_capture: Captured) -> None:
    with modelwatch.agent_step("planner", provider="openai"):
        pass
    span = modelwatch_capture.span("invoke_agent planner")
    assert span.attributes is not None
    assert span.attributes[semconv.GEN_AI_PROVIDER_NAME] == "openai"
    (point,) = modelwatch_capture.metric_points("gen_ai.invoke_agent.duration")
    assert semconv.GEN_AI_PROVIDER_NAME not in point.attributes


async def test_async_agent_spec_drives_a_step(modelwatch_capture: Captured) -> None:
    call = lifecycle.start(lifecycle.agent_spec("search", "tool"))
    await asyncio.sleep(0)
    call.stop()
    assert modelwatch_capture.metric_count("gen_ai.execute_tool.duration") == 1


# ------------------------------------------------------------------ streams and hooks
class Hooks:
    def __init__(self) -> None:
        self.chunks: list[Any] = []
        self.ends = 0
        self.errors: list[BaseException] = []

    def on_chunk(self, call: lifecycle.Call, chunk: Any) -> None:
        self.chunks.append(chunk)

    def on_end(self, call: lifecycle.Call) -> None:
        self.ends += 1
        call.set_response(finish_reasons="stop")

    def on_error(self, call: lifecycle.Call, exc: BaseException) -> None:
        self.errors.append(exc)


def _chunks(fail: bool) -> Iterator[dict[str, Any]]:
    yield {"text": "a"}
    yield {"text": "b", "usage": {"prompt_tokens": 2, "completion_tokens": 2}}
    if fail:
        raise Boom("cut")


async def _achunks(fail: bool) -> AsyncIterator[dict[str, Any]]:
    for chunk in _chunks(fail):
        yield chunk


def _hooked(h: Hooks) -> dict[str, Any]:
    return {"on_chunk": h.on_chunk, "on_end": h.on_end, "on_error": h.on_error}


def test_wrap_stream_hooks_and_single_end(modelwatch_capture: Captured) -> None:
    h = Hooks()
    call = lifecycle.start(SPEC)
    stream = lifecycle.wrap_stream(call, _chunks(False), **_hooked(h))
    assert modelwatch.current_call() is None  # detached before the consumer's loop
    assert [c["text"] for c in stream] == ["a", "b"]
    stream.close()
    assert (len(h.chunks), h.ends, h.errors) == (2, 1, [])
    span = modelwatch_capture.span("chat gpt-4o-mini")
    assert span.attributes is not None
    assert span.attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert span.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 2
    assert modelwatch_capture.metric_count(DURATION) == 1


async def test_wrap_async_stream_hooks_and_single_end(modelwatch_capture: Captured) -> None:
    h = Hooks()
    call = lifecycle.start(SPEC)
    stream = lifecycle.wrap_async_stream(call, _achunks(False), **_hooked(h))
    assert modelwatch.current_call() is None
    assert [c["text"] async for c in stream] == ["a", "b"]
    await stream.aclose()
    assert (len(h.chunks), h.ends, h.errors) == (2, 1, [])
    span = modelwatch_capture.span("chat gpt-4o-mini")
    assert span.attributes is not None
    assert span.attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert modelwatch_capture.metric_count(DURATION) == 1


def test_wrap_stream_error_hook(modelwatch_capture: Captured) -> None:
    h = Hooks()
    stream = lifecycle.wrap_stream(lifecycle.start(SPEC), _chunks(True), **_hooked(h))
    with pytest.raises(Boom):
        list(stream)
    assert (h.ends, [type(e) for e in h.errors]) == (0, [Boom])
    assert modelwatch_capture.metric_count(DURATION, {semconv.ERROR_TYPE: "_OTHER"}) == 1


async def test_wrap_async_stream_error_hook(modelwatch_capture: Captured) -> None:
    h = Hooks()
    stream = lifecycle.wrap_async_stream(lifecycle.start(SPEC), _achunks(True), **_hooked(h))
    with pytest.raises(Boom):
        async for _ in stream:
            pass
    assert (h.ends, [type(e) for e in h.errors]) == (0, [Boom])
    assert modelwatch_capture.metric_count(DURATION, {semconv.ERROR_TYPE: "_OTHER"}) == 1


def test_a_raising_hook_never_reaches_the_consumer(modelwatch_capture: Captured) -> None:
    def bad(*_: Any) -> None:
        raise RuntimeError("hook bug")

    stream = lifecycle.wrap_stream(lifecycle.start(SPEC), _chunks(False), on_chunk=bad, on_end=bad)
    assert len(list(stream)) == 2
    assert modelwatch_capture.metric_count(DURATION) == 1


def test_wrap_stream_of_a_whole_answer_ends_now(modelwatch_capture: Captured) -> None:
    h = Hooks()
    assert lifecycle.wrap_stream(lifecycle.start(SPEC), 42, **_hooked(h)) == 42
    assert (h.chunks, h.ends) == ([42], 1)
    assert modelwatch_capture.metric_count(DURATION) == 1


# ------------------------------------------------------------------ listeners
def test_listener_gets_one_record_per_logical_call(
    modelwatch_capture: Captured, records: list[lifecycle.CallRecord]
) -> None:
    outer = lifecycle.start(SPEC)
    lifecycle.start(SPEC).stop(ANSWER)  # nested, same model: forwarded, not reported
    outer.stop()
    with pytest.raises(Boom), modelwatch.monitored(model="m", provider="p", analysis="review"):
        raise Boom
    first, second = records
    assert (first.model, first.input_tokens, first.output_tokens) == ("gpt-4o-mini", 7, 3)
    assert first.error_kind is None
    assert first.is_model
    assert first.duration_s >= 0
    assert first.attributes[semconv.SERVER_ADDRESS] == "h"
    assert (second.model, second.analysis, second.error_kind) == ("m", "review", "_OTHER")


async def test_async_listener_gets_stream_record(
    modelwatch_capture: Captured, records: list[lifecycle.CallRecord]
) -> None:
    stream = lifecycle.wrap_async_stream(lifecycle.start(SPEC), _achunks(False))
    async for _ in stream:
        break
    await stream.aclose()
    (record,) = records
    assert record.cut_short
    assert record.error_kind is None


def test_a_raising_listener_is_contained(modelwatch_capture: Captured) -> None:
    def bad(record: lifecycle.CallRecord) -> None:
        raise RuntimeError("listener bug")

    lifecycle.add_listener(bad)
    lifecycle.add_listener(bad)  # once
    try:
        assert _record.LISTENERS.count(bad) == 1
        with modelwatch.monitored(model="m", provider="p"):
            pass
    finally:
        lifecycle.remove_listener(bad)
    lifecycle.remove_listener(bad)  # not registered: nothing
    assert modelwatch_capture.metric_count(DURATION) == 1


def test_add_listener_rejects_non_callables() -> None:
    with pytest.raises(TypeError):
        lifecycle.add_listener(42)  # type: ignore[arg-type]


# ------------------------------------------------------------------ ending the span once
class RaisingOnEnd(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("host processor bug")


def test_a_raising_span_processor_ends_the_span_once(caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.sdk.metrics import MeterProvider

    provider = TracerProvider()
    provider.add_span_processor(RaisingOnEnd())
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with (
        caplog.at_level(logging.WARNING, logger="opentelemetry.sdk.trace"),
        use_providers(provider, MeterProvider()),
    ):
        for _ in range(3):
            with modelwatch.monitored(model="m", provider="p"):
                pass
    assert not [r for r in caplog.records if "ended span" in r.getMessage()]
