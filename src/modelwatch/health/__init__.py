"""Health checks per model, per analysis type and per dependency, with HTTP endpoints.

::

    health = modelwatch.Health()
    health.add("google/flan-t5-large", probe=ping_flan, kind="model", critical=True)
    health.add("code_review", probe=synthetic(router.call, "def f(): pass"), kind="analysis")
    health.add("redis", probe=redis_client.ping, kind="dependency")
    health.start()
    app.mount("/health", health.asgi())

See ``docs/health.md``.
"""

from modelwatch._clock import SystemClock
from modelwatch.health._workers import Clock, Probe
from modelwatch.health.asgi import HealthASGI
from modelwatch.health.registry import Health
from modelwatch.health.results import (
    CheckResult,
    CircuitState,
    HealthReport,
    Kind,
    OverallStatus,
    Status,
)
from modelwatch.health.synthetic import synthetic
from modelwatch.health.wsgi import HealthWSGI

__all__ = [
    "CheckResult",
    "CircuitState",
    "Clock",
    "Health",
    "HealthASGI",
    "HealthReport",
    "HealthWSGI",
    "Kind",
    "OverallStatus",
    "Probe",
    "Status",
    "SystemClock",
    "synthetic",
]
