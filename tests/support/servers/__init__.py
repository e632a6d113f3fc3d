"""Real servers on 127.0.0.1 for tests: Redis, Prometheus, Alertmanager and Celery workers.

Each server is started from its Debian binary with a temporary directory, bound to 127.0.0.1 only,
polled until ready and stopped by PID by the fixture that started it. When a binary is missing the
test is skipped, or fails when MODELWATCH_REQUIRE_SERVERS=1 (CI): see `require_server`.

Fixtures (loaded as a plugin by tests/conftest.py):

- `redis_server` (session): a `RedisServer` with `.host`, `.port`, `.url` and `.fresh_url()`.
- `redis_server_factory`: private Redis servers for one test, which it may `.stop()`.
- `prometheus_server` / `module_prometheus_server`: factories returning a `PrometheusServer`.
- `alertmanager_server` / `module_alertmanager_server`: factories returning an `AlertmanagerServer`.
- `webhook_receiver`: an HTTP server collecting Alertmanager webhook payloads.
- `celery_worker`: factory starting `celery -A MODULE worker` against the Redis broker.

Helpers: `require_server(name)` (the skip/fail rule), `free_port()`, `wait_until(predicate)`
(poll with a deadline), `http_request()`, `listening_addresses(pid)`, `prometheus_config()`,
`alertmanager_config()`. Each server lives in a module of its own
(`_redis`, `_prometheus`, `_alertmanager`, `_celery`; generic helpers in `_process`).
"""

from support.servers._alertmanager import (
    AlertmanagerFactory,
    AlertmanagerServer,
    WebhookReceiver,
    alertmanager_config,
    alertmanager_server,
    module_alertmanager_server,
    webhook_receiver,
)
from support.servers._celery import (
    BROKER_ENV,
    CeleryWorker,
    CeleryWorkerFactory,
    celery_worker,
)
from support.servers._process import (
    LOCALHOST,
    REQUIRE_ENV,
    TESTS_DIR,
    ManagedProcess,
    free_port,
    http_request,
    listening_addresses,
    require_server,
    servers_required,
    spawn,
    wait_until,
)
from support.servers._prometheus import (
    PrometheusFactory,
    PrometheusServer,
    module_prometheus_server,
    prometheus_config,
    prometheus_server,
)
from support.servers._redis import (
    RedisServer,
    _start_redis,
    redis_server,
    redis_server_factory,
    start_redis,
)

__all__ = [
    "BROKER_ENV",
    "LOCALHOST",
    "REQUIRE_ENV",
    "TESTS_DIR",
    "AlertmanagerFactory",
    "AlertmanagerServer",
    "CeleryWorker",
    "CeleryWorkerFactory",
    "ManagedProcess",
    "PrometheusFactory",
    "PrometheusServer",
    "RedisServer",
    "WebhookReceiver",
    "_start_redis",
    "alertmanager_config",
    "alertmanager_server",
    "celery_worker",
    "free_port",
    "http_request",
    "listening_addresses",
    "module_alertmanager_server",
    "module_prometheus_server",
    "prometheus_config",
    "prometheus_server",
    "redis_server",
    "redis_server_factory",
    "require_server",
    "servers_required",
    "spawn",
    "start_redis",
    "wait_until",
    "webhook_receiver",
]
