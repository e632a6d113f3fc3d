"""agent_step: nesting, concurrency (gather, task groups, threads), generators, errors,
and the thread-pool context helpers (propagate, context_executor)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import modelwatch
from modelwatch.testing import Captured

MODEL = "google/flan-t5-large"
AGENT_DURATION = "gen_ai.invoke_agent.duration"
TOOL_DURATION = "gen_ai.execute_tool.duration"
MODEL_DURATION = "gen_ai.client.operation.duration"


class ToolFailedError(Exception):
    pass


def model_call(prompt: str) -> str:
    with modelwatch.monitored(model=MODEL, provider="huggingface", operation="text_generation"):
        return prompt.upper()


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


# --------------------------------------------------------------------------- names, kinds


def test_agent_and_tool_spans_carry_genai_names_kinds_and_attributes(
    modelwatch_capture: Captured,
) -> None:
    @modelwatch.agent_step("planner")
    def plan() -> str:
        return search()

    @modelwatch.agent_step("web_search", kind="tool")
    def search() -> str:
        return "found"

    assert plan() == "found"

    agent = modelwatch_capture.span("invoke_agent planner")
    tool = modelwatch_capture.span("execute_tool web_search")
    assert agent.kind is SpanKind.INTERNAL
    assert tool.kind is SpanKind.INTERNAL
    assert agent.attributes is not None
    assert tool.attributes is not None
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.agent.name"] == "planner"
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "web_search"
    assert parent_id(tool) == span_id(agent)
    assert modelwatch_capture.metric_count(AGENT_DURATION, {"gen_ai.agent.name": "planner"}) == 1
    assert modelwatch_capture.metric_count(TOOL_DURATION, {"gen_ai.tool.name": "web_search"}) == 1
    # an agent step is not a model call: no model-call metrics
    assert modelwatch_capture.metric_points(MODEL_DURATION) == []


def test_invalid_declarations_are_rejected_at_decoration_time() -> None:
    with pytest.raises(ValueError, match="name"):
        modelwatch.agent_step("  ")
    with pytest.raises(ValueError, match="kind"):
        modelwatch.agent_step("x", kind="skill")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- nesting


def test_nested_agent_tool_model_calls_form_one_tree(modelwatch_capture: Captured) -> None:
    with modelwatch.agent_step("orchestrator"):
        with modelwatch.agent_step("researcher"):
            with modelwatch.agent_step("fetch", kind="tool"):
                model_call("a")
            model_call("b")
        with modelwatch.agent_step("writer"):
            model_call("c")

    root = modelwatch_capture.span("invoke_agent orchestrator")
    researcher = modelwatch_capture.span("invoke_agent researcher")
    writer = modelwatch_capture.span("invoke_agent writer")
    fetch = modelwatch_capture.span("execute_tool fetch")
    models = modelwatch_capture.find_spans(f"text_completion {MODEL}")
    assert len(models) == 3
    assert root.parent is None
    assert parent_id(researcher) == span_id(root)
    assert parent_id(writer) == span_id(root)
    assert parent_id(fetch) == span_id(researcher)
    assert sorted(parent_id(m) for m in models) == sorted(
        [span_id(fetch), span_id(researcher), span_id(writer)]
    )
    assert {trace_id(s) for s in modelwatch_capture.spans} == {trace_id(root)}
    # three separate model calls (agent steps between them, not the same model nested)
    assert modelwatch_capture.metric_count(MODEL_DURATION) == 3
    assert modelwatch_capture.metric_count(AGENT_DURATION) == 3


def test_current_call_is_the_innermost_step_and_is_restored(modelwatch_capture: Captured) -> None:
    assert modelwatch.current_call() is None
    with modelwatch.agent_step("outer") as outer:
        assert modelwatch.current_call() is outer
        with modelwatch.agent_step("inner", kind="tool") as inner:
            assert modelwatch.current_call() is inner
            assert inner is not outer
        assert modelwatch.current_call() is outer
    assert modelwatch.current_call() is None
    assert not trace.get_current_span().get_span_context().is_valid


def test_recursive_agent_steps_nest(modelwatch_capture: Captured) -> None:
    @modelwatch.agent_step("recurse")
    def recurse(depth: int) -> int:
        return depth if depth == 0 else recurse(depth - 1) + 1

    assert recurse(3) == 3
    spans = modelwatch_capture.find_spans("invoke_agent recurse")
    assert len(spans) == 4
    by_id = {span_id(s): s for s in spans}
    roots = [s for s in spans if parent_id(s) not in by_id]
    assert len(roots) == 1
    assert modelwatch_capture.metric_count(AGENT_DURATION) == 4


# --------------------------------------------------------------------------- errors


def test_errors_keep_the_exception_object_and_mark_each_enclosing_step(
    modelwatch_capture: Captured,
) -> None:
    raised = ToolFailedError("search backend down")

    @modelwatch.agent_step("search", kind="tool")
    def search() -> None:
        raise raised

    @modelwatch.agent_step("planner")
    def plan() -> None:
        search()

    with pytest.raises(ToolFailedError) as info:
        plan()
    assert info.value is raised

    for name in ("execute_tool search", "invoke_agent planner"):
        span = modelwatch_capture.span(name)
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["error.type"] == "_OTHER"
        events = [e for e in span.events if e.name == "exception"]
        assert len(events) == 1
        assert events[0].attributes is not None
        assert str(events[0].attributes["exception.type"]).endswith("ToolFailedError")
    assert modelwatch_capture.metric_count(TOOL_DURATION, {"error.type": "_OTHER"}) == 1
    assert modelwatch_capture.metric_count(AGENT_DURATION, {"error.type": "_OTHER"}) == 1


def test_an_error_caught_inside_the_step_leaves_it_successful(
    modelwatch_capture: Captured,
) -> None:
    @modelwatch.agent_step("flaky", kind="tool")
    def flaky() -> None:
        raise ToolFailedError("once")

    with modelwatch.agent_step("resilient"):
        with pytest.raises(ToolFailedError):
            flaky()

    assert modelwatch_capture.span("execute_tool flaky").status.status_code is StatusCode.ERROR
    agent = modelwatch_capture.span("invoke_agent resilient")
    assert agent.status.status_code is StatusCode.UNSET
    assert agent.attributes is not None
    assert "error.type" not in agent.attributes


async def test_cancelled_async_step_ends_with_cancelled_kind(modelwatch_capture: Captured) -> None:
    started = asyncio.Event()

    @modelwatch.agent_step("waiter")
    async def wait_forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(wait_forever())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = modelwatch_capture.span("invoke_agent waiter")
    assert span.attributes is not None
    assert span.attributes["error.type"] == "cancelled"
    assert modelwatch_capture.metric_count(AGENT_DURATION, {"error.type": "cancelled"}) == 1


# --------------------------------------------------------------------------- asyncio


async def test_gather_keeps_each_branch_under_its_own_step(modelwatch_capture: Captured) -> None:
    @modelwatch.agent_step("lookup", kind="tool")
    async def lookup(key: str) -> str:
        await asyncio.sleep(0)
        model_call(key)
        await asyncio.sleep(0)
        return key

    @modelwatch.agent_step("fanout")
    async def fanout() -> list[str]:
        return list(await asyncio.gather(*(lookup(k) for k in "abcd")))

    assert await fanout() == ["a", "b", "c", "d"]

    root = modelwatch_capture.span("invoke_agent fanout")
    tools = modelwatch_capture.find_spans("execute_tool lookup")
    models = modelwatch_capture.find_spans(f"text_completion {MODEL}")
    assert len(tools) == 4
    assert len(models) == 4
    assert {parent_id(t) for t in tools} == {span_id(root)}
    # each model call belongs to the tool branch it ran in, not to a sibling
    assert sorted(parent_id(m) for m in models) == sorted(span_id(t) for t in tools)
    assert modelwatch_capture.metric_count(TOOL_DURATION) == 4


async def test_task_group_children_inherit_the_step(modelwatch_capture: Captured) -> None:
    @modelwatch.agent_step("worker", kind="tool")
    async def work() -> None:
        await asyncio.sleep(0)

    async with modelwatch.agent_step("supervisor"):
        async with asyncio.TaskGroup() as group:
            for _ in range(3):
                group.create_task(work())

    root = modelwatch_capture.span("invoke_agent supervisor")
    workers = modelwatch_capture.find_spans("execute_tool worker")
    assert len(workers) == 3
    assert {parent_id(w) for w in workers} == {span_id(root)}


async def test_task_group_failure_marks_failed_child_and_the_supervisor(
    modelwatch_capture: Captured,
) -> None:
    @modelwatch.agent_step("doomed", kind="tool")
    async def doomed() -> None:
        await asyncio.sleep(0)
        raise ToolFailedError("boom")

    @modelwatch.agent_step("sibling", kind="tool")
    async def sibling() -> None:
        await asyncio.Event().wait()

    async def supervise() -> None:
        async with modelwatch.agent_step("supervisor"):
            async with asyncio.TaskGroup() as group:
                group.create_task(doomed())
                group.create_task(sibling())

    with pytest.raises(Exception) as info:
        await supervise()
    assert type(info.value).__name__ == "ExceptionGroup"

    assert modelwatch_capture.span("execute_tool doomed").attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "doomed",
        "error.type": "_OTHER",
    }
    sibling_span = modelwatch_capture.span("execute_tool sibling")
    assert sibling_span.attributes is not None
    assert sibling_span.attributes["error.type"] == "cancelled"
    supervisor = modelwatch_capture.span("invoke_agent supervisor")
    assert supervisor.status.status_code is StatusCode.ERROR


async def test_to_thread_copies_context_without_help(modelwatch_capture: Captured) -> None:
    with modelwatch.agent_step("offload") as step:
        current = await asyncio.to_thread(modelwatch.current_call)
        await asyncio.to_thread(model_call, "x")
    assert current is step
    root = modelwatch_capture.span("invoke_agent offload")
    assert parent_id(modelwatch_capture.span(f"text_completion {MODEL}")) == span_id(root)


# --------------------------------------------------------------------------- threads


def test_plain_thread_pool_loses_the_context(modelwatch_capture: Captured) -> None:
    """Documents why the helper exists: concurrent.futures does not copy contextvars."""
    with modelwatch.agent_step("planner"), ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(model_call, "lost").result()
    model = modelwatch_capture.span(f"text_completion {MODEL}")
    assert model.parent is None
    assert trace_id(model) != trace_id(modelwatch_capture.span("invoke_agent planner"))


def test_context_executor_keeps_model_calls_under_the_step(modelwatch_capture: Captured) -> None:
    with modelwatch.agent_step("planner") as step:
        with modelwatch.context_executor(ThreadPoolExecutor(max_workers=3)) as pool:
            seen = list(pool.map(lambda _: modelwatch.current_call(), range(6)))
            results = [pool.submit(model_call, p).result() for p in "xyz"]
    assert results == ["X", "Y", "Z"]
    assert seen == [step] * 6
    root = modelwatch_capture.span("invoke_agent planner")
    models = modelwatch_capture.find_spans(f"text_completion {MODEL}")
    assert len(models) == 3
    assert {parent_id(m) for m in models} == {span_id(root)}
    assert modelwatch_capture.metric_count(MODEL_DURATION) == 3


def test_context_executor_concurrent_steps_in_threads(modelwatch_capture: Captured) -> None:
    barrier = threading.Barrier(3)

    @modelwatch.agent_step("branch", kind="tool")
    def branch(i: int) -> int:
        barrier.wait(timeout=5)  # all three steps are open at once
        model_call(str(i))
        return i

    with modelwatch.agent_step("parallel"):
        pool = modelwatch.context_executor(ThreadPoolExecutor(max_workers=3))
        try:
            assert sorted(pool.map(branch, range(3))) == [0, 1, 2]
        finally:
            pool.shutdown()

    root = modelwatch_capture.span("invoke_agent parallel")
    branches = modelwatch_capture.find_spans("execute_tool branch")
    models = modelwatch_capture.find_spans(f"text_completion {MODEL}")
    assert {parent_id(b) for b in branches} == {span_id(root)}
    assert sorted(parent_id(m) for m in models) == sorted(span_id(b) for b in branches)


def test_context_executor_takes_the_context_at_submission_not_creation(
    modelwatch_capture: Captured,
) -> None:
    pool = modelwatch.context_executor(ThreadPoolExecutor(max_workers=1))
    try:
        assert pool.submit(modelwatch.current_call).result() is None
        with modelwatch.agent_step("later") as step:
            assert pool.submit(modelwatch.current_call).result() is step
    finally:
        pool.shutdown(wait=True)
    assert isinstance(pool, Executor)
    assert modelwatch.context_executor(pool) is pool


def test_context_executor_rejects_non_executors() -> None:
    with pytest.raises(TypeError, match="Executor"):
        modelwatch.context_executor(object())  # type: ignore[arg-type]


def test_context_executor_passes_exceptions_through() -> None:
    raised = ToolFailedError("in pool")

    def fail() -> None:
        raise raised

    with modelwatch.context_executor(ThreadPoolExecutor(max_workers=1)) as pool:
        future = pool.submit(fail)
        assert future.exception(timeout=5) is raised


def test_propagate_binds_the_context_at_wrap_time(modelwatch_capture: Captured) -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    results: list[object] = []

    def body() -> None:
        results.append((modelwatch.current_call(), marker.get()))
        model_call("t")

    with modelwatch.agent_step("spawner") as step:
        marker.set("from-caller")
        bound = modelwatch.propagate(body)
        threads = [threading.Thread(target=bound) for _ in range(2)]
    # started after the step ended: still the step's context, twice at once
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert results == [(step, "from-caller")] * 2
    models = modelwatch_capture.find_spans(f"text_completion {MODEL}")
    root = modelwatch_capture.span("invoke_agent spawner")
    assert {parent_id(m) for m in models} == {span_id(root)}
    assert bound.__name__ == "body"


def test_propagate_rejects_non_callables() -> None:
    with pytest.raises(TypeError, match="callable"):
        modelwatch.propagate(42)  # type: ignore[arg-type]


async def test_run_in_executor_with_propagate(modelwatch_capture: Captured) -> None:
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1) as pool:
        with modelwatch.agent_step("async-planner") as step:
            bound = modelwatch.propagate(modelwatch.current_call)
            current = await loop.run_in_executor(pool, bound)
            lost = await loop.run_in_executor(pool, modelwatch.current_call)
    assert current is step
    assert lost is None


# --------------------------------------------------------------------------- generators


def test_generator_step_is_current_only_while_its_code_runs(modelwatch_capture: Captured) -> None:
    inside: list[object] = []

    @modelwatch.agent_step("streamer")
    def stream() -> Iterator[int]:
        for i in range(3):
            inside.append(modelwatch.current_call())
            model_call(str(i))
            yield i

    outside: list[object] = []
    with modelwatch.agent_step("consumer") as consumer:
        for _ in stream():
            outside.append(modelwatch.current_call())

    assert outside == [consumer] * 3
    assert len(inside) == 3
    assert len({id(c) for c in inside}) == 1
    assert inside[0] is not consumer
    streamer = modelwatch_capture.span("invoke_agent streamer")
    assert parent_id(streamer) == span_id(modelwatch_capture.span("invoke_agent consumer"))
    models = modelwatch_capture.find_spans(f"text_completion {MODEL}")
    assert {parent_id(m) for m in models} == {span_id(streamer)}
    assert modelwatch_capture.metric_count(AGENT_DURATION, {"gen_ai.agent.name": "streamer"}) == 1


def test_generator_step_closed_early_ends_once_and_is_marked(
    modelwatch_capture: Captured,
) -> None:
    @modelwatch.agent_step("endless", kind="tool")
    def endless() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    for value in endless():
        if value == 2:
            break
    span = modelwatch_capture.span("execute_tool endless")
    assert span.attributes is not None
    assert span.attributes["modelwatch.stream"] is True
    assert span.status.status_code is StatusCode.UNSET
    assert modelwatch_capture.metric_count(TOOL_DURATION) == 1


def test_generator_step_error_mid_stream(modelwatch_capture: Captured) -> None:
    @modelwatch.agent_step("broken", kind="tool")
    def broken() -> Iterator[int]:
        yield 1
        raise ToolFailedError("mid-stream")

    got: list[int] = []
    with pytest.raises(ToolFailedError):
        got.extend(broken())
    assert got == [1]
    span = modelwatch_capture.span("execute_tool broken")
    assert span.status.status_code is StatusCode.ERROR
    assert modelwatch_capture.metric_count(TOOL_DURATION, {"error.type": "_OTHER"}) == 1


async def test_async_generator_steps_interleaved_under_gather(
    modelwatch_capture: Captured,
) -> None:
    @modelwatch.agent_step("ticker")
    async def ticker(name: str) -> AsyncIterator[str]:
        for i in range(2):
            await asyncio.sleep(0)
            model_call(f"{name}{i}")
            yield f"{name}{i}"

    async def drain(name: str) -> list[str]:
        return [item async for item in ticker(name)]

    with modelwatch.agent_step("root"):
        results = await asyncio.gather(drain("a"), drain("b"))
    assert results == [["a0", "a1"], ["b0", "b1"]]
    tickers = modelwatch_capture.find_spans("invoke_agent ticker")
    models = modelwatch_capture.find_spans(f"text_completion {MODEL}")
    assert len(tickers) == 2
    root = modelwatch_capture.span("invoke_agent root")
    assert {parent_id(t) for t in tickers} == {span_id(root)}
    # two model calls per ticker, each under its own ticker despite the interleaving
    per_parent: dict[int | None, int] = {}
    for m in models:
        per_parent[parent_id(m)] = per_parent.get(parent_id(m), 0) + 1
    assert per_parent == {span_id(t): 2 for t in tickers}


# --------------------------------------------------------------------------- methods


def test_methods_and_async_methods_keep_their_shape(modelwatch_capture: Captured) -> None:
    import inspect

    class Agent:
        def __init__(self, name: str) -> None:
            self.name = name

        @modelwatch.agent_step("agent.run")
        def run(self, x: int) -> str:
            return f"{self.name}:{x}"

        @modelwatch.agent_step("agent.arun")
        async def arun(self, x: int) -> str:
            return f"{self.name}:{x}"

    agent = Agent("a")
    assert agent.run(1) == "a:1"
    assert asyncio.run(agent.arun(2)) == "a:2"
    assert inspect.iscoroutinefunction(Agent.arun)
    assert not inspect.iscoroutinefunction(Agent.run)
    assert len(modelwatch_capture.find_spans("invoke_agent agent.run")) == 1
    assert len(modelwatch_capture.find_spans("invoke_agent agent.arun")) == 1
