"""An AI engine run as several processes: uvicorn or gunicorn workers, each its own instance.

Every setting comes from the environment (docs/deployment.md), so the same module runs as one
process or as many::

    export HF_BASE_URL=http://127.0.0.1:8080           # models at {HF_BASE_URL}/models/{model}
    export MODELWATCH_PROMETHEUS_PORT=9464-9479        # each worker: the first free port
    export MODELWATCH_PROMETHEUS_SD_DIR=/var/lib/modelwatch/sd   # Prometheus file_sd targets
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318     # optional: push as well
    uvicorn --app-dir examples fleet_engine:app --workers 4 --port 8000
    # or: gunicorn -k uvicorn.workers.UvicornWorker -w 4 --chdir examples fleet_engine:app

    curl -s -XPOST localhost:8000/analyze -H 'content-type: application/json' \\
         -d '{"text": "def f(): return 1/0"}'
    curl -s localhost:8000/whoami      # this worker's pid, /metrics port and instance id
    curl -s localhost:8000/health/ready

Breaker state is shared through Redis when ``REDIS_URL`` is set, so every worker (and every
Celery worker) sees a breaker another process opened, and answers ``/health`` from it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from huggingface_hub import InferenceClient
from opentelemetry import trace

import modelwatch

MODEL = "google/flan-t5-large"

config = modelwatch.configure(service_name=os.environ.get("MODELWATCH_SERVICE_NAME", "ai-engine"))


def breaker_policy() -> modelwatch.BreakerPolicy:
    """Share breaker state through Redis when ``REDIS_URL`` is set (the fleet default)."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return modelwatch.BreakerPolicy(consecutive_failures=3, open_s=30.0)
    import redis

    from modelwatch.resilience import redis_storage

    return modelwatch.BreakerPolicy(
        consecutive_failures=3,
        open_s=30.0,
        # timeouts: a slow Redis must never hold the background sync (no warning at start)
        storage=redis_storage(
            redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        ),
    )


client = InferenceClient(model=f"{os.environ['HF_BASE_URL']}/models/{MODEL}", timeout=20.0)
router = modelwatch.Router(
    "code_review",
    [
        modelwatch.Backend(
            lambda text: client.text_generation(f"Review: {text}", max_new_tokens=16),
            model=MODEL,
            provider="huggingface",
            operation="text_generation",
            analysis="code_review",
        )
    ],
    breaker=breaker_policy(),
)
health = modelwatch.Health()
health.add("engine", probe=lambda: True, kind="dependency", interval_s=30.0)
# the model's check is its breaker: shared through Redis, so every worker answers the same
health.add_router(router, critical=True)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    health.start()
    try:
        yield
    finally:
        health.stop()


app = FastAPI(lifespan=lifespan)
app.mount("/health", health.asgi())  # /health/live for liveness, /health/ready for readiness


@app.post("/analyze")
def analyze(body: dict[str, Any]) -> dict[str, Any]:
    """One code review through the router (failover and breakers included)."""
    return {"answer": router.call(str(body.get("text", ""))), "pid": os.getpid()}


@app.get("/whoami")
def whoami() -> dict[str, Any]:
    """Which process answered: pid, its ``/metrics`` port and its ``service.instance.id``."""
    current = modelwatch._config.current_config()
    resource = getattr(trace.get_tracer_provider(), "resource", None)
    attributes = dict(resource.attributes) if resource is not None else {}
    return {
        "pid": os.getpid(),
        "prometheus_port": current.prometheus_port if current else None,
        "instance": attributes.get("service.instance.id"),
    }
