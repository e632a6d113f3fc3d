"""The shipped examples run: served for real, they answer the health routes."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import httpx

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_fastapi_example_probes_in_its_lifespan_and_serves_health(
    serve_asgi: Any, wait_until: Any
) -> None:
    module = runpy.run_path(str(EXAMPLES / "health_fastapi.py"))  # not as __main__
    health = module["health"]
    try:
        with (
            serve_asgi(module["app"], lifespan="on") as base,
            httpx.Client(base_url=base, follow_redirects=True) as client,
        ):
            wait_until(lambda: "unknown" not in {c.status for c in health.report().checks})
            body = client.get("/health").json()  # Starlette redirects to /health/
            assert client.get("/").json() == {"service": "ai-engine"}
        assert [c["name"] for c in body["checks"]] == [
            "google/flan-t5-large",
            "facebook/bart-large-cnn",
            "code_review",
            "redis",
        ]
        assert not health.running  # the lifespan stopped it
    finally:
        health.stop()


def test_flask_example_serves_health_under_its_prefix(serve_wsgi: Any) -> None:
    module = runpy.run_path(str(EXAMPLES / "health_flask.py"))
    health = module["health"]
    try:
        health.run_once()
        with serve_wsgi(module["app"]) as base, httpx.Client(base_url=base) as client:
            models = client.get("/health/models")
            assert client.get("/").json() == {"service": "ai-engine"}
        assert models.status_code == 200
        assert [c["name"] for c in models.json()["checks"]] == ["google/flan-t5-large"]
        assert models.json()["status"] == "ok"
    finally:
        health.stop()
