"""modelwatch.celery with REAL workers (prefork and solo) on a real Redis broker, exporting to a
real OTLP receiver on 127.0.0.1. Skipped when Redis or Celery is missing, failed instead under
MODELWATCH_REQUIRE_SERVERS=1 (the fixtures' `require_server`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from celery import Celery

import modelwatch
import modelwatch.celery
from modelwatch.testing import Captured
from support.otlp import MetricPoint, OtlpReceiver
from support.servers import CeleryWorker, CeleryWorkerFactory

pytestmark = [pytest.mark.servers, pytest.mark.slow]

APP = "integrations.celery_tasks"
DURATION = "modelwatch.task.duration"
QUEUE_WAIT = "modelwatch.task.queue_wait"
MODEL_SPAN = "text_completion google/flan-t5-large"  # operation="text_generation", mapped


def start_worker(
    celery_worker: CeleryWorkerFactory, receiver: OtlpReceiver, pool: str, *extra: str
) -> CeleryWorker:
    return celery_worker(
        APP,
        pool=pool,
        concurrency=2 if pool == "prefork" else None,
        extra_args=extra,
        env={"MODELWATCH_TEST_OTLP": receiver.http_endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"},
    )


@pytest.fixture
def producer(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Factory: an instrumented producer app bound to a worker's broker."""
    apps: list[Celery] = []

    def make(worker: CeleryWorker) -> Celery:
        app = Celery("producer", broker=worker.broker_url, backend=worker.broker_url)
        modelwatch.celery.instrument(app)
        apps.append(app)
        return app

    yield make
    for app in apps:
        modelwatch.celery.uninstrument(app)
        app.close()


def task_counts(points: list[MetricPoint]) -> dict[tuple[str, str], int]:
    """Recorded values per (task, outcome), summed over processes.

    Each pool child exports its own cumulative series (one start time per child); a child
    may export more than once, so take the latest count of each (series, start time).
    """
    latest: dict[tuple[str, str, int], int] = {}
    for p in points:
        key = (
            str(p.attributes["modelwatch.task.name"]),
            str(p.attributes.get("modelwatch.task.outcome", "")),
            int(p.raw.start_time_unix_nano),  # type: ignore[attr-defined]
        )
        latest[key] = max(latest.get(key, 0), p.count or 0)
    totals: dict[tuple[str, str], int] = {}
    for (name, outcome, _), count in latest.items():
        totals[(name, outcome)] = totals.get((name, outcome), 0) + count
    return totals


def hexid(value: int) -> str:
    return f"{value:016x}"


def test_prefork_trace_continues_and_recycled_children_export_task_metrics(
    celery_worker: CeleryWorkerFactory,
    otlp_receiver: OtlpReceiver,
    producer: Any,
    modelwatch_capture: Captured,
) -> None:
    worker = start_worker(celery_worker, otlp_receiver, "prefork", "--max-tasks-per-child=1")
    app = producer(worker)

    with modelwatch.agent_step("request"):
        traced = [app.send_task("mw.traced", args=(f"p{i}",)) for i in range(2)]
        adds = [app.send_task("mw.add", args=(i, i)) for i in range(2)]
        failing = app.send_task("mw.fail")
        flaky = app.send_task("mw.flaky")
    answers = [r.get(timeout=20) for r in traced]
    assert [r.get(timeout=20) for r in adds] == [0, 2]
    assert flaky.get(timeout=20) == "recovered"
    with pytest.raises(ValueError, match="always fails"):
        failing.get(timeout=20)
    for r in (*traced, *adds, failing, flaky):
        r.forget()

    # each task ran in a fresh child (max_tasks_per_child=1), none in the main process
    pids = [a["pid"] for a in answers]
    assert len(set(pids)) == 2
    assert worker.pid not in pids
    assert [a["answer"] for a in answers] == ["P0", "P1"]

    # producer -> worker: same trace, and the worker span's parent is the producer span
    request_span = modelwatch_capture.span("invoke_agent request")
    sends = {
        s.attributes["messaging.message.id"]: s
        for s in modelwatch_capture.find_spans()
        if s.name.startswith("send ")
    }  # type: ignore[index]
    assert len(sends) == 6
    trace_id = f"{request_span.context.trace_id:032x}"  # type: ignore[union-attr]
    for result, answer in zip(traced, answers, strict=True):
        send = sends[result.id]
        assert answer["trace_id"] == trace_id
        process = otlp_receiver.wait_for(
            lambda rid=result.id: next(
                (
                    s
                    for s in otlp_receiver.spans("process mw.traced")
                    if s.attributes.get("messaging.message.id") == rid
                ),
                None,
            ),
            timeout=15,
        )
        assert process.kind == "CONSUMER"
        assert process.trace_id == trace_id
        assert process.parent_span_id == hexid(send.context.span_id)  # type: ignore[union-attr]
        assert process.span_id == answer["span_id"]  # current inside the task
        assert process.attributes["modelwatch.task.outcome"] == "success"
        # the model call inside the task belongs to the request's trace
        model = otlp_receiver.wait_for(
            lambda pid=process.span_id: next(
                (s for s in otlp_receiver.spans(MODEL_SPAN) if s.parent_span_id == pid), None
            ),
            timeout=15,
        )
        assert model.trace_id == trace_id

    # task metrics arrive from the recycled children (flushed at worker_process_shutdown)
    expected = {
        ("mw.traced", "success"): 2,
        ("mw.add", "success"): 2,
        ("mw.fail", "failure"): 1,
        ("mw.flaky", "retry"): 1,
        ("mw.flaky", "success"): 1,
    }
    counts = otlp_receiver.wait_for(
        lambda: (c := task_counts(otlp_receiver.metric_points(DURATION))) == expected and c,
        timeout=20,
    )
    assert counts == expected
    waits = task_counts(otlp_receiver.metric_points(QUEUE_WAIT))
    assert waits == {
        ("mw.traced", ""): 2,
        ("mw.add", ""): 2,
        ("mw.fail", ""): 1,
        ("mw.flaky", ""): 2,
    }
    for point in otlp_receiver.metric_points(DURATION):
        assert set(point.attributes) == {"modelwatch.task.name", "modelwatch.task.outcome"}
        assert point.unit == "s"
    for point in otlp_receiver.metric_points(QUEUE_WAIT):
        assert set(point.attributes) == {"modelwatch.task.name"}
    failed = otlp_receiver.spans("process mw.fail")
    assert len(failed) == 1
    assert failed[0].status == "ERROR"
    assert failed[0].attributes["modelwatch.task.outcome"] == "failure"


def test_solo_worker_warm_shutdown_flushes_metrics_and_counts_revoked(
    celery_worker: CeleryWorkerFactory,
    otlp_receiver: OtlpReceiver,
    producer: Any,
    modelwatch_capture: Captured,
) -> None:
    worker = start_worker(celery_worker, otlp_receiver, "solo")
    app = producer(worker)

    expired = app.send_task(
        "mw.add", args=(1, 1), expires=datetime.now(timezone.utc) - timedelta(seconds=5)
    )
    with modelwatch.agent_step("solo-request"):
        traced = app.send_task("mw.traced", args=("solo",))
    answer = traced.get(timeout=15)
    expired.get(timeout=15, propagate=False)
    assert expired.state == "REVOKED"
    for r in (traced, expired):
        r.forget()

    process = otlp_receiver.wait_for(
        lambda: next(iter(otlp_receiver.spans("process mw.traced")), None), timeout=15
    )
    send = modelwatch_capture.span("send mw.traced")
    assert process.trace_id == answer["trace_id"] == f"{send.context.trace_id:032x}"  # type: ignore[union-attr]
    assert process.parent_span_id == hexid(send.context.span_id)  # type: ignore[union-attr]
    assert answer["pid"] == worker.pid  # solo: the task ran in the main process

    worker.stop()  # warm shutdown: worker_shutdown flushes what the 10 s reader still holds
    counts = otlp_receiver.wait_for(
        lambda: task_counts(otlp_receiver.metric_points(DURATION)) or None, timeout=10
    )
    assert counts == {("mw.traced", "success"): 1, ("mw.add", "revoked"): 1}


def test_prefork_warm_shutdown_flushes_children_that_were_never_recycled(
    celery_worker: CeleryWorkerFactory, otlp_receiver: OtlpReceiver, producer: Any
) -> None:
    worker = start_worker(celery_worker, otlp_receiver, "prefork")
    app = producer(worker)
    results = [app.send_task("mw.add", args=(i, 1)) for i in range(4)]
    assert [r.get(timeout=15) for r in results] == [1, 2, 3, 4]
    for r in results:
        r.forget()
    worker.stop()  # warm: the children exit (worker_process_shutdown) and flush first
    counts = otlp_receiver.wait_for(
        lambda: (
            (c := task_counts(otlp_receiver.metric_points(DURATION))) == {("mw.add", "success"): 4}
            and c
        ),
        timeout=10,
    )
    assert counts == {("mw.add", "success"): 4}
