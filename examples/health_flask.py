"""Health checks in a Flask service, mounted as a WSGI app under /health.

    pip install modelwatch flask
    python examples/health_flask.py
    curl -s localhost:5000/health/models | python -m json.tool
    modelwatch check http://127.0.0.1:5000/health/

The same ``health.wsgi()`` app mounts in Django (see docs/health.md).
"""

from __future__ import annotations

import atexit
import time

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import modelwatch

health = modelwatch.Health()


def ping_flan() -> bool:
    """Stand-in for ``InferenceClient(model).text_generation("ping", max_new_tokens=1)``."""
    time.sleep(0.05)
    return True


def check_postgres() -> str:
    """A probe may also say ``"degraded"`` itself, e.g. when replication lags."""
    return "ok"


def check_requirement_extraction() -> None:
    """Returning None means healthy; raising means down (the message is scrubbed)."""


health.add("google/flan-t5-large", probe=ping_flan, kind="model", critical=True)
health.add("requirement_extraction", probe=check_requirement_extraction, kind="analysis")
health.add("postgres", probe=check_postgres, kind="dependency", critical=True)

app = Flask(__name__)
app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
    app.wsgi_app, {"/health": health.wsgi()}
)


@app.get("/")
def index() -> dict[str, str]:
    return {"service": "ai-engine"}


if __name__ == "__main__":
    health.start()
    atexit.register(health.stop)
    app.run(host="127.0.0.1", port=5000)
