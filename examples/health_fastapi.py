"""Health checks in a FastAPI service: models, an analysis type and a dependency.

    pip install modelwatch fastapi uvicorn
    python examples/health_fastapi.py
    curl -s localhost:8000/health/ | python -m json.tool
    modelwatch check http://127.0.0.1:8000/health/        # exit 0 ok, 1 degraded, 2 down

The probes here are stand-ins; in a real service they ping your inference endpoint,
run a tiny request through your router, and ping Redis.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

import modelwatch
from modelwatch.health import synthetic

health = modelwatch.Health(flap_threshold=2)


async def ping_flan() -> bool:
    """Stand-in for ``await client.text_generation("ping", max_new_tokens=1)``."""
    await asyncio.sleep(0.05)
    return True


def ping_bart() -> bool:
    """A flaky model: down about one probe in five."""
    return random.random() > 0.2


def review_code(code: str) -> str:
    """Stand-in for ``router.call(code)`` running the real code_review analysis."""
    return f"no issues in {len(code)} characters"


def ping_redis() -> bool:
    """Stand-in for ``redis_client.ping()``."""
    return True


health.add(
    "google/flan-t5-large",
    probe=ping_flan,
    kind="model",
    critical=True,
    weight=2.0,
    timeout_s=5.0,
    interval_s=15.0,
)
health.add("facebook/bart-large-cnn", probe=ping_bart, kind="model", interval_s=10.0)
health.add(
    "code_review",
    probe=synthetic(review_code, "def f(): pass", expect=bool),
    kind="analysis",
    timeout_s=20.0,
    interval_s=60.0,
)
health.add("redis", probe=ping_redis, kind="dependency", critical=True, interval_s=10.0)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    health.start()  # background probing for the life of the app
    try:
        yield
    finally:
        health.stop()


app = FastAPI(lifespan=lifespan)
app.mount("/health", health.asgi())  # add token="..." to require a bearer token


@app.get("/")
def index() -> dict[str, str]:
    return {"service": "ai-engine"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8000)
