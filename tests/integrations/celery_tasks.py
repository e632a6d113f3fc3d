"""The Celery app the real test workers run (``-A integrations.celery_tasks``).

The worker exports to the OTLP receiver named by MODELWATCH_TEST_OTLP; the broker and result
backend come from MODELWATCH_TEST_BROKER_URL (set by the ``celery_worker`` fixture).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from opentelemetry import trace

import modelwatch
import modelwatch.celery

broker_url = os.environ.get("MODELWATCH_TEST_BROKER_URL", "memory://")

app = Celery("modelwatch_test_tasks", broker=broker_url, backend=broker_url)
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)

if os.environ.get("MODELWATCH_TEST_OTLP"):
    modelwatch.configure(
        service_name="celery-worker-test",
        otlp_endpoint=os.environ["MODELWATCH_TEST_OTLP"],
        otlp_protocol="http/protobuf",
    )
modelwatch.celery.instrument(app)


class TransientError(Exception):
    """What the flaky task fails with once before succeeding."""


@modelwatch.monitored(
    model="google/flan-t5-large", provider="huggingface", operation="text_generation"
)
def ask_model(prompt: str) -> str:
    return prompt.upper()


def _ids() -> dict[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    return {
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "pid": os.getpid(),
    }


@app.task(name="mw.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="mw.traced")
def traced(prompt: str) -> dict[str, Any]:
    """Answers with the trace ids current in the task and makes a model call."""
    return {**_ids(), "answer": ask_model(prompt)}


@app.task(name="mw.fail")
def fail() -> None:
    raise ValueError("this task always fails")


@app.task(name="mw.flaky", bind=True, max_retries=1, default_retry_delay=0)
def flaky(self: Any) -> str:
    if self.request.retries == 0:
        raise self.retry(exc=TransientError("first attempt fails"), countdown=0)
    return "recovered"
