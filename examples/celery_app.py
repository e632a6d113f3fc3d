"""A Celery app with modelwatch: one trace from the request that queued a task to its model calls.

Self-contained demo (no Redis, no collector: an in-thread worker on the in-memory broker):

    python examples/celery_app.py

With a real broker and a collector, as in production:

    export CELERY_BROKER_URL=redis://127.0.0.1:6379/0
    export MODELWATCH_OTLP_ENDPOINT=http://127.0.0.1:4318      # read by modelwatch.configure()
    celery -A examples.celery_app worker --pool=prefork --concurrency=2 --max-tasks-per-child=100
    python examples/celery_app.py --send                         # the producer side
"""

from __future__ import annotations

import argparse
import os

from celery import Celery
from opentelemetry.sdk.trace import ReadableSpan

import modelwatch
import modelwatch.celery

BROKER = os.environ.get("CELERY_BROKER_URL", "memory://")
app = Celery(
    "ai_engine",
    broker=BROKER,
    backend=os.environ.get(
        "CELERY_RESULT_BACKEND", "cache+memory://" if BROKER == "memory://" else BROKER
    ),
)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
)

if os.environ.get("MODELWATCH_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
    modelwatch.configure(service_name="ai-engine-worker")
modelwatch.celery.instrument(app)  # here, in the module the worker imports: before the pool forks


@modelwatch.monitored(
    model="google/flan-t5-large",
    provider="huggingface",
    operation="text_generation",
    analysis="code_review",
)
def call_model(code: str) -> str:
    return f"review of {len(code)} characters: looks fine"  # an InferenceClient call in real life


@app.task(name="ai_engine.review")
def review(code: str) -> str:
    """A task whose model call joins the trace of the request that queued the task."""
    with modelwatch.agent_step("reviewer"):
        return call_model(code)


@app.task(name="ai_engine.explicit")
@modelwatch.celery.monitored_task  # the explicit alternative, for one task
def explicit(text: str) -> str:
    return text.upper()


def _print_tree(spans: list[ReadableSpan]) -> None:
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent, []).append(span)
    known = {s.context.span_id for s in spans if s.context is not None}

    def show(parent: int | None, depth: int) -> None:
        for span in children.get(parent, []):
            print("  " * depth + f"{span.name}  [{span.kind.name}]")
            if span.context is not None:
                show(span.context.span_id, depth + 1)

    show(None, 0)
    for parent, orphans in children.items():  # parents outside this process (none here)
        if parent is not None and parent not in known:
            for span in orphans:
                print(f"{span.name} (parent in another process)")


def demo() -> None:
    from celery.contrib.testing.worker import start_worker

    from modelwatch.testing import capture

    with capture() as captured, start_worker(app, pool="solo", perform_ping_check=False):
        with modelwatch.agent_step("http_request"):
            result = review.delay("def add(a, b):\n    return a + b\n")
        print("result:", result.get(timeout=10))
    _print_tree(captured.spans)
    for point in captured.metric_points("modelwatch.task.duration"):
        print("modelwatch.task.duration", dict(point.attributes), "count", point.count)
    for point in captured.metric_points("modelwatch.task.queue_wait"):
        print("modelwatch.task.queue_wait", dict(point.attributes), f"{point.value:.4f} s")


def send() -> None:
    with modelwatch.agent_step("http_request"):
        result = review.delay("print('hello')")
    print("result:", result.get(timeout=30))
    modelwatch.flush()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--send", action="store_true", help="publish to a running worker")
    if parser.parse_args().send:
        send()
    else:
        demo()
