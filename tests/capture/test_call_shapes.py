"""@monitored on every call shape keeps the host's behaviour and emits the model-call telemetry."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import modelwatch
from modelwatch.testing import Captured

MODEL = "google/flan-t5-large"
DURATION = "gen_ai.client.operation.duration"


def deco() -> modelwatch.monitored:
    return modelwatch.monitored(
        model=MODEL, provider="huggingface", operation="text_generation", analysis="code_review"
    )


class Boom(Exception):
    pass


# Each shape: (build(fail) -> callable, run(callable) -> result). ``fail`` makes it raise Boom.
def _plain(fail: bool) -> Callable[..., Any]:
    @deco()
    def f(x: int, *, y: int = 2) -> int:
        if fail:
            raise Boom("plain")
        return x + y

    return f


def _coroutine(fail: bool) -> Callable[..., Any]:
    @deco()
    async def f(x: int, *, y: int = 2) -> int:
        await asyncio.sleep(0)
        if fail:
            raise Boom("coroutine")
        return x + y

    return f


def _generator(fail: bool) -> Callable[..., Any]:
    @deco()
    def f(x: int, *, y: int = 2) -> Iterator[int]:
        yield x
        if fail:
            raise Boom("generator")
        yield y

    return f


def _async_generator(fail: bool) -> Callable[..., Any]:
    @deco()
    async def f(x: int, *, y: int = 2) -> AsyncIterator[int]:
        yield x
        await asyncio.sleep(0)
        if fail:
            raise Boom("async generator")
        yield y

    return f


class Service:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    @deco()
    def method(self, x: int, *, y: int = 2) -> int:
        if self.fail:
            raise Boom("method")
        return x + y

    @deco()
    @classmethod
    def klass(cls, x: int, *, y: int = 2, fail: bool = False) -> int:
        if fail:
            raise Boom("classmethod")
        return x + y

    @deco()
    @staticmethod
    def static(x: int, *, y: int = 2, fail: bool = False) -> int:
        if fail:
            raise Boom("staticmethod")
        return x + y

    @classmethod
    @deco()
    def klass_outer(cls, x: int, *, y: int = 2, fail: bool = False) -> int:
        if fail:
            raise Boom("classmethod outer")
        return x + y


def _run(fn: Callable[..., Any]) -> Any:
    result = fn(1, y=2)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    if inspect.isasyncgen(result):
        return asyncio.run(_collect(result))
    if inspect.isgenerator(result):
        return list(result)
    return result


async def _await(aw: Awaitable[Any]) -> Any:
    return await aw


async def _collect(agen: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in agen]


SHAPES: dict[str, tuple[Callable[[bool], Callable[..., Any]], Any]] = {
    "function": (_plain, 3),
    "coroutine": (_coroutine, 3),
    "generator": (_generator, [1, 2]),
    "async_generator": (_async_generator, [1, 2]),
    "method": (lambda fail: Service(fail).method, 3),
    "classmethod": (lambda fail: lambda x, y: Service.klass(x, y=y, fail=fail), 3),
    "classmethod_on_instance": (
        lambda fail: lambda x, y: Service(fail).klass(x, y=y, fail=fail),
        3,
    ),
    "staticmethod": (lambda fail: lambda x, y: Service.static(x, y=y, fail=fail), 3),
    "classmethod_outer": (
        lambda fail: lambda x, y: Service.klass_outer(x, y=y, fail=fail),
        3,
    ),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_success_keeps_result_and_emits_span_and_duration(
    shape: str, modelwatch_capture: Captured
) -> None:
    build, expected = SHAPES[shape]
    assert _run(build(False)) == expected
    span = modelwatch_capture.span(f"text_completion {MODEL}")
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None
    assert span.attributes["gen_ai.operation.name"] == "text_completion"
    assert span.attributes["modelwatch.task"] == "text_generation"
    assert span.attributes["gen_ai.provider.name"] == "huggingface"
    assert span.attributes["gen_ai.request.model"] == MODEL
    assert span.attributes["modelwatch.analysis"] == "code_review"
    assert "error.type" not in span.attributes
    assert modelwatch_capture.metric_count(DURATION, {"gen_ai.request.model": MODEL}) == 1
    assert modelwatch_capture.metric_count(DURATION, {"error.type": "_OTHER"}) == 0


@pytest.mark.parametrize("shape", SHAPES)
def test_failure_reraises_the_same_exception_object(
    shape: str, modelwatch_capture: Captured
) -> None:
    build, _ = SHAPES[shape]
    with pytest.raises(Boom) as raised:
        _run(build(True))
    span = modelwatch_capture.span(f"text_completion {MODEL}")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "_OTHER"
    event = next(e for e in span.events if e.name == "exception")
    assert event.attributes is not None
    assert event.attributes["exception.type"].endswith("Boom")
    assert event.attributes["exception.message"] == str(raised.value)
    assert modelwatch_capture.metric_count(DURATION, {"error.type": "_OTHER"}) == 1


def test_exception_identity_and_traceback_are_untouched() -> None:
    original = Boom("same object")

    def raw() -> None:
        raise original

    wrapped = deco()(raw)
    with pytest.raises(Boom) as raised:
        wrapped()
    assert raised.value is original
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None


def test_return_value_identity() -> None:
    sentinel = object()
    assert deco()(lambda: sentinel)() is sentinel


def test_signature_wrapped_and_kind_predicates_are_preserved() -> None:
    async def co(a: int, b: str = "x") -> int:
        return a

    async def agen(a: int) -> AsyncIterator[int]:
        yield a

    def gen(a: int) -> Iterator[int]:
        yield a

    def plain(a: int, *, b: str = "x") -> int:
        """Docstring kept."""
        return a

    for fn in (co, agen, gen, plain):
        wrapped = deco()(fn)
        assert inspect.signature(wrapped) == inspect.signature(fn)
        assert wrapped.__wrapped__ is fn
        assert wrapped.__name__ == fn.__name__
        assert inspect.iscoroutinefunction(wrapped) == inspect.iscoroutinefunction(fn)
        assert inspect.isasyncgenfunction(wrapped) == inspect.isasyncgenfunction(fn)
        assert inspect.isgeneratorfunction(wrapped) == inspect.isgeneratorfunction(fn)
    assert deco()(plain).__doc__ == "Docstring kept."


@pytest.mark.parametrize("shape", ["coroutine", "generator", "async_generator", "function"])
def test_wrong_arguments_raise_at_call_time_like_the_original(shape: str) -> None:
    fn = SHAPES[shape][0](False)
    with pytest.raises(TypeError):
        fn()  # missing x: the undecorated function raises here, not at first next()/await


def test_context_manager_sync(modelwatch_capture: Captured) -> None:
    m = modelwatch.monitored(model="facebook/bart-large-cnn", provider="huggingface")
    with m as call:
        assert modelwatch.current_call() is call
        call.record_usage(input_tokens=812, output_tokens=64)
        call.set_response_model("facebook/bart-large-cnn")
    assert modelwatch.current_call() is None
    span = modelwatch_capture.span("chat facebook/bart-large-cnn")
    assert span.attributes is not None
    assert span.attributes["gen_ai.usage.input_tokens"] == 812
    assert span.attributes["gen_ai.usage.output_tokens"] == 64
    assert span.attributes["gen_ai.response.model"] == "facebook/bart-large-cnn"
    assert call.cost == pytest.approx(0.0006)


def test_context_manager_error_propagates_unchanged(modelwatch_capture: Captured) -> None:
    err = TimeoutError("read timed out")
    with pytest.raises(TimeoutError) as raised:
        with modelwatch.monitored(model="m", provider="p"):
            raise err
    assert raised.value is err
    span = modelwatch_capture.span("chat m")
    assert span.attributes is not None
    assert span.attributes["error.type"] == "timeout"


async def test_async_context_manager(modelwatch_capture: Captured) -> None:
    async with modelwatch.monitored(model="m", provider="openai") as call:
        await asyncio.sleep(0)
        assert modelwatch.current_call() is call
    assert modelwatch.current_call() is None
    assert modelwatch_capture.metric_count(DURATION, {"gen_ai.provider.name": "openai"}) == 1


async def test_concurrent_tasks_keep_their_own_current_call(modelwatch_capture: Captured) -> None:
    m = modelwatch.monitored(model="m", provider="p")
    seen: list[bool] = []

    async def one(i: int) -> None:
        async with m as call:
            await asyncio.sleep(0)
            seen.append(modelwatch.current_call() is call)
            call.set_attribute("i", i)

    await asyncio.gather(*(one(i) for i in range(5)))
    assert seen == [True] * 5
    assert sorted(s.attributes["i"] for s in modelwatch_capture.find_spans("chat m")) == list(
        range(5)
    )


def test_nested_calls_are_parent_and_child(modelwatch_capture: Captured) -> None:
    @modelwatch.agent_step("reviewer")
    def step() -> str:
        return inner()

    @modelwatch.monitored(model="m", provider="p")
    def inner() -> str:
        return "ok"

    assert step() == "ok"
    parent = modelwatch_capture.span("invoke_agent reviewer")
    child = modelwatch_capture.span("chat m")
    assert child.parent is not None
    assert child.parent.span_id == parent.context.span_id
    assert child.context.trace_id == parent.context.trace_id


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": "", "provider": "p"},
        {"model": "m", "provider": None},
        {"model": 3, "provider": "p"},
        {"model": "m", "provider": "p", "operation": ""},
        {"model": "m", "provider": "p", "analysis": 7},
        {"model": "m", "provider": "p", "usage": "not callable"},
    ],
)
def test_bad_arguments_get_a_clear_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"monitored\(\)"):
        modelwatch.monitored(**kwargs)


def test_decorating_a_non_callable_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="decorates functions"):
        deco()(42)  # type: ignore[call-overload]


def test_record_usage_rejects_bad_counts_and_records_nothing(
    modelwatch_capture: Captured,
) -> None:
    with modelwatch.monitored(model="m", provider="p") as call:
        with pytest.raises(ValueError, match="input_tokens"):
            call.record_usage(input_tokens=-1)
        with pytest.raises(ValueError, match="output_tokens"):
            call.record_usage(output_tokens=1.5)  # type: ignore[arg-type]
    span = modelwatch_capture.span("chat m")
    assert span.attributes is not None
    assert "gen_ai.usage.input_tokens" not in span.attributes
    assert modelwatch_capture.metric_points("gen_ai.client.token.usage") == []
