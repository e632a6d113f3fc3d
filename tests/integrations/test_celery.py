"""modelwatch.celery in process: spans, propagation headers, outcomes, metrics, explicit marking.

The real-worker tests (prefork and solo, Redis broker, OTLP receiver) are in
test_celery_worker.py; these use Celery's in-memory broker and eager execution.
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, signals
from celery.app.task import Context
from opentelemetry.trace import SpanKind, StatusCode

import modelwatch
import modelwatch.celery
from modelwatch.integrations import celery as mw_celery
from modelwatch.testing import Captured

DURATION = "modelwatch.task.duration"
QUEUE_WAIT = "modelwatch.task.queue_wait"


class TransientError(Exception):
    pass


def make_app() -> Celery:
    app = Celery("unit", broker="memory://", backend="cache+memory://")
    app.conf.update(task_store_eager_result=False)

    @app.task(name="unit.add", shared=False)
    def add(x: int, y: int) -> int:
        with modelwatch.monitored(model="m", provider="p"):
            return x + y

    @app.task(name="unit.fail", shared=False)
    def fail() -> None:
        raise ValueError("nope")

    @app.task(name="unit.flaky", shared=False, bind=True, max_retries=1, default_retry_delay=0)
    def flaky(self: Any) -> str:
        if self.request.retries == 0:
            raise self.retry(exc=TransientError("once"), countdown=0)
        return "ok"

    return app


@pytest.fixture
def app() -> Iterator[Celery]:
    app = make_app()
    modelwatch.celery.instrument(app)
    try:
        yield app
    finally:
        modelwatch.celery.uninstrument(app)
        app.close()


@pytest.fixture
def published_headers() -> Iterator[list[dict[str, Any]]]:
    """The headers of every message published, as they leave (after our handler ran)."""
    seen: list[dict[str, Any]] = []

    def keep(headers: dict[str, Any] | None = None, **_: Any) -> None:
        seen.append(dict(headers or {}))

    signals.after_task_publish.connect(keep, weak=False)
    try:
        yield seen
    finally:
        signals.after_task_publish.disconnect(keep)


def ids(span: Any) -> tuple[str, str]:
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


# --------------------------------------------------------------------------- instrument


def test_instrument_is_idempotent_and_uninstrument_disconnects(
    modelwatch_capture: Captured,
) -> None:
    def ours() -> int:
        return sum(1 for key, _ in signals.task_prerun.receivers if key[0] == "modelwatch:_prerun")

    app = make_app()
    assert ours() == 0
    modelwatch.celery.instrument(app)
    modelwatch.celery.instrument(app)
    assert modelwatch.celery.is_instrumented(app)
    assert ours() == 1
    app.tasks["unit.add"].apply(args=(1, 2))
    modelwatch.celery.uninstrument(app)
    assert not modelwatch.celery.is_instrumented(app)
    assert ours() == 0
    assert app.tasks["unit.add"].apply(args=(3, 4)).get() == 7
    assert len(modelwatch_capture.find_spans("process unit.add")) == 1
    assert modelwatch_capture.metric_count(DURATION) == 1
    modelwatch.celery.uninstrument(app)  # harmless
    app.close()


def test_instrument_rejects_non_apps() -> None:
    with pytest.raises(TypeError, match="Celery app"):
        modelwatch.celery.instrument(object())


def test_tasks_of_other_apps_are_left_alone(app: Celery, modelwatch_capture: Captured) -> None:
    other = make_app()
    try:
        assert other.tasks["unit.add"].apply(args=(1, 1)).get() == 2
    finally:
        other.close()
    assert modelwatch_capture.find_spans("process unit.add") == []
    assert modelwatch_capture.metric_points(DURATION) == []


# --------------------------------------------------------------------------- producer


def test_publish_makes_a_producer_span_and_injects_its_context(
    app: Celery, modelwatch_capture: Captured, published_headers: list[dict[str, Any]]
) -> None:
    before = time.time()
    with modelwatch.agent_step("request"):
        result = app.tasks["unit.add"].apply_async(args=(1, 2))
    send = modelwatch_capture.span("send unit.add")
    assert send.kind is SpanKind.PRODUCER
    assert send.end_time is not None
    attributes = dict(send.attributes or {})
    assert attributes["messaging.system"] == "celery"
    assert attributes["messaging.operation.type"] == "send"
    assert attributes["messaging.message.id"] == result.id
    assert attributes["messaging.destination.name"] == "celery"
    assert attributes["modelwatch.task.name"] == "unit.add"
    agent = modelwatch_capture.span("invoke_agent request")
    assert send.parent is not None
    assert agent.context is not None
    assert send.parent.span_id == agent.context.span_id

    [headers] = published_headers
    trace_id, span_id = ids(send)
    assert headers["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
    assert before <= headers[modelwatch.celery.HEADER_PUBLISHED_AT] <= time.time()


def test_send_task_by_name_is_traced_too(
    app: Celery, modelwatch_capture: Captured, published_headers: list[dict[str, Any]]
) -> None:
    app.send_task("remote.only", args=(1,))
    assert modelwatch_capture.span("send remote.only").kind is SpanKind.PRODUCER
    assert "traceparent" in published_headers[0]


# --------------------------------------------------------------------------- consumer


def test_run_continues_the_producer_trace_and_records_queue_wait(
    app: Celery, modelwatch_capture: Captured
) -> None:
    with modelwatch.agent_step("request"):
        app.tasks["unit.add"].apply_async(args=(1, 2))
    send = modelwatch_capture.span("send unit.add")
    trace_id, span_id = ids(send)
    headers = {
        "traceparent": f"00-{trace_id}-{span_id}-01",
        modelwatch.celery.HEADER_PUBLISHED_AT: time.time() - 2.0,
    }
    assert app.tasks["unit.add"].apply(args=(2, 3), headers=headers).get() == 5

    process = modelwatch_capture.span("process unit.add")
    assert process.kind is SpanKind.CONSUMER
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id  # type: ignore[union-attr]
    assert ids(process)[0] == trace_id
    # the model call inside the task is a child of the task's span
    model = modelwatch_capture.span("chat m")
    assert model.parent is not None
    assert model.parent.span_id == process.context.span_id  # type: ignore[union-attr]
    assert (process.attributes or {})["modelwatch.task.outcome"] == "success"
    [wait] = modelwatch_capture.metric_points(QUEUE_WAIT)
    assert wait.attributes == {"modelwatch.task.name": "unit.add"}
    assert 2.0 <= wait.value < 10.0


def test_outcomes_success_failure_retry_and_metric_attributes(
    app: Celery, modelwatch_capture: Captured
) -> None:
    assert app.tasks["unit.add"].apply(args=(1, 1)).get() == 2
    failed = app.tasks["unit.fail"].apply()
    assert failed.failed()
    assert app.tasks["unit.flaky"].apply().get() == "ok"  # eager retry re-runs inline

    def count(name: str, outcome: str) -> int:
        return modelwatch_capture.metric_count(
            DURATION, {"modelwatch.task.name": name, "modelwatch.task.outcome": outcome}
        )

    assert count("unit.add", "success") == 1
    assert count("unit.fail", "failure") == 1
    assert count("unit.flaky", "retry") == 1
    assert count("unit.flaky", "success") == 1
    for point in modelwatch_capture.metric_points(DURATION):
        assert set(point.attributes) == {"modelwatch.task.name", "modelwatch.task.outcome"}

    failure = modelwatch_capture.span("process unit.fail")
    assert failure.status.status_code is StatusCode.ERROR
    assert (failure.attributes or {})["modelwatch.task.outcome"] == "failure"
    assert (failure.attributes or {})["error.type"] == "_OTHER"
    [event] = [e for e in failure.events if e.name == "exception"]
    assert str((event.attributes or {})["exception.type"]).endswith("ValueError")

    flaky = modelwatch_capture.find_spans("process unit.flaky")
    outcomes = sorted((s.attributes or {})["modelwatch.task.outcome"] for s in flaky)
    assert outcomes == ["retry", "success"]
    retried = next(s for s in flaky if (s.attributes or {})["modelwatch.task.outcome"] == "retry")
    [event] = [e for e in retried.events if e.name == "exception"]
    assert str((event.attributes or {})["exception.type"]).endswith("TransientError")


def test_revoked_before_start_is_counted(app: Celery, modelwatch_capture: Captured) -> None:
    task = app.tasks["unit.add"]
    request = Context(id="abc", task="unit.add")
    signals.task_revoked.send(
        sender=task, request=request, terminated=False, signum=None, expired=True
    )
    points = modelwatch_capture.metric_points(DURATION)
    assert [(p.attributes, p.count, p.value) for p in points] == [
        ({"modelwatch.task.name": "unit.add", "modelwatch.task.outcome": "revoked"}, 1, 0.0)
    ]


def test_the_task_span_is_current_only_while_the_task_runs(
    app: Celery, modelwatch_capture: Captured
) -> None:
    from opentelemetry import trace

    app.tasks["unit.add"].apply(args=(1, 1))
    assert not trace.get_current_span().get_span_context().is_valid
    assert mw_celery._runs == {}


def test_a_broken_telemetry_pipeline_never_breaks_the_task(
    app: Celery, modelwatch_capture: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> Any:
        raise RuntimeError("telemetry is down")

    monkeypatch.setattr(mw_celery, "telemetry", broken)
    assert app.tasks["unit.add"].apply(args=(20, 22)).get() == 42
    assert app.tasks["unit.add"].apply_async(args=(1, 1)).id


# --------------------------------------------------------------------------- coexistence


def test_no_duplicate_spans_when_the_contrib_instrumentation_is_active(
    app: Celery,
    modelwatch_capture: Captured,
    monkeypatch: pytest.MonkeyPatch,
    published_headers: list[dict[str, Any]],
) -> None:
    contrib = types.ModuleType("opentelemetry.instrumentation.celery")

    class CeleryInstrumentor:
        is_instrumented_by_opentelemetry = True

    contrib.CeleryInstrumentor = CeleryInstrumentor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "opentelemetry.instrumentation.celery", contrib)

    app.tasks["unit.add"].apply_async(args=(1, 2))
    assert app.tasks["unit.add"].apply(args=(1, 2)).get() == 3
    names = {s.name for s in modelwatch_capture.spans}
    assert names == {"chat m"}  # the contrib package makes the task spans; we make none
    assert "traceparent" not in published_headers[0]  # nor do we touch its propagation
    assert modelwatch.celery.HEADER_PUBLISHED_AT in published_headers[0]
    assert modelwatch_capture.metric_count(DURATION, {"modelwatch.task.outcome": "success"}) == 1


# --------------------------------------------------------------------------- monitored_task


def test_monitored_task_marks_one_task_without_instrument(modelwatch_capture: Captured) -> None:
    app = Celery("explicit", broker="memory://")

    @app.task(name="explicit.summarize")
    @modelwatch.celery.monitored_task
    def summarize(text: str) -> str:
        return text[:5]

    @app.task(name="explicit.broken")
    @modelwatch.celery.monitored_task
    def broken() -> None:
        raise ValueError("broken")

    try:
        assert summarize.apply(args=("hello world",)).get() == "hello"
        assert broken.apply().failed()
        assert summarize("called directly") == "calle"  # outside a task: pass-through
    finally:
        app.close()
    assert len(modelwatch_capture.find_spans("process explicit.summarize")) == 1
    assert modelwatch_capture.span("process explicit.broken").status.status_code is (
        StatusCode.ERROR
    )
    assert (
        modelwatch_capture.metric_count(
            DURATION,
            {"modelwatch.task.name": "explicit.summarize", "modelwatch.task.outcome": "success"},
        )
        == 1
    )
    assert (
        modelwatch_capture.metric_count(
            DURATION,
            {"modelwatch.task.name": "explicit.broken", "modelwatch.task.outcome": "failure"},
        )
        == 1
    )


def test_monitored_task_defers_to_instrument(modelwatch_capture: Captured) -> None:
    app = Celery("both", broker="memory://")

    @app.task(name="both.echo")
    @modelwatch.celery.monitored_task
    def echo(x: int) -> int:
        return x

    modelwatch.celery.instrument(app)
    try:
        assert echo.apply(args=(7,)).get() == 7
    finally:
        modelwatch.celery.uninstrument(app)
        app.close()
    assert len(modelwatch_capture.find_spans("process both.echo")) == 1
    assert modelwatch_capture.metric_count(DURATION) == 1


def test_monitored_task_rejects_non_callables() -> None:
    with pytest.raises(TypeError, match="functions"):
        modelwatch.celery.monitored_task(3)  # type: ignore[type-var]
