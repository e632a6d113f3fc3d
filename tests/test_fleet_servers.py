"""Fleets on real servers (issue 12): `uvicorn --workers 2` running examples/fleet_engine.py
with a port range, discovered by a real Prometheus through file_sd; the same engine pushing
OTLP to the test receiver. Everything on 127.0.0.1; stopped by PID."""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelwatch.testing import FakeModelServer
from support.fleet import discovered, file_sd_config
from support.otlp import OtlpReceiver
from support.servers import (
    ManagedProcess,
    PrometheusFactory,
    RedisServer,
    free_port,
    http_request,
    spawn,
    wait_until,
)

pytestmark = [pytest.mark.servers, pytest.mark.slow]

#: The breaker re-reads the shared state every 0.5 s; a loaded machine gets ten times that.
SYNC_DEADLINE_S = 5.0

ROOT = Path(__file__).resolve().parents[1]
USER_CALLS = (
    'sum(gen_ai_client_operation_duration_seconds_count{job="fleet",modelwatch_origin!="probe"})'
)


def _post(port: int, text: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/analyze",
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def _get(port: int, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


class Engine:
    """`uvicorn --workers 2 fleet_engine:app` and what it registered."""

    def __init__(self, process: ManagedProcess, port: int, sd_dir: Path, ports: range) -> None:
        self.process, self.port, self.sd_dir, self.ports = process, port, sd_dir, ports

    def metrics_port(self, pid: int) -> int:
        """The /metrics port ``pid`` registered (asserted to be of the configured range)."""
        port = int(self.targets()[pid].rsplit(":", 1)[1])
        assert port in self.ports, (port, self.ports)
        return port

    def targets(self) -> dict[int, str]:
        """pid -> host:port, from the discovery files."""
        return discovered(self.sd_dir)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    started: list[ManagedProcess] = []
    server = FakeModelServer().start()

    def start(kind: str = "uvicorn", processes: int = 2, **env: str) -> Engine:
        port = free_port()
        base = free_port()
        sd_dir = tmp_path / "sd"
        sd_dir.mkdir(exist_ok=True)
        full_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("MODELWATCH_", "OTEL_"))
        }
        full_env.update(
            {
                "HF_BASE_URL": server.url,
                "MODELWATCH_SERVICE_NAME": "fleet-engine",
                "MODELWATCH_PROMETHEUS_PORT": f"{base}-{base + 15}",
                "MODELWATCH_PROMETHEUS_SD_DIR": str(sd_dir),
                "PYTHONUNBUFFERED": "1",
                **env,
            }
        )
        if kind == "uvicorn":
            argv = [
                sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "examples"),
                "fleet_engine:app", "--workers", "2", "--host", "127.0.0.1", "--port", str(port),
            ]  # fmt: skip
        else:  # gunicorn --preload: configure() runs in the master, workers are forked
            argv = [
                sys.executable, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker",
                "--preload", "-w", "2", "--chdir", str(ROOT / "examples"),
                "-b", f"127.0.0.1:{port}", "--no-control-socket", "fleet_engine:app",
            ]  # fmt: skip
        process = spawn("uvicorn", argv, tmp_path / f"uvicorn-{port}.log", env=full_env)
        started.append(process)
        running = Engine(process, port, sd_dir, range(base, base + 16))
        try:
            wait_until(
                lambda: len(running.targets()) == processes,
                timeout=40,
                message=f"{processes} processes registered",
            )
            wait_until(lambda: _get(port, "/whoami"), timeout=20, message="the engine to answer")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{process.output}") from None
        return running

    yield start
    for process in started:
        process.stop(signal.SIGTERM, timeout=20)
    server.stop()


def test_uvicorn_workers_are_each_discovered_and_counted_exactly(
    engine: Callable[..., Engine], prometheus_server: PrometheusFactory
) -> None:
    running = engine()
    first = running.targets()
    assert len({running.metrics_port(pid) for pid in first}) == 2  # its own port each
    prom = prometheus_server(file_sd_config("fleet", running.sd_dir))

    def up_targets() -> dict[str, dict[str, Any]] | None:
        active = prom.targets()
        up = {t["labels"]["pid"]: t for t in active if t["health"] == "up"}
        return up if len(active) == 2 and len(up) == 2 else None

    wait_until(up_targets, timeout=30, message="both workers scraped")
    sent = 24
    pids = {_post(running.port, f"def f{i}(): pass")["pid"] for i in range(sent)}
    assert pids <= set(first)
    total = wait_until(
        lambda: prom.query_value(USER_CALLS) == sent and sent,
        timeout=30,
        message=f"the sum over instances to reach {sent}",
    )
    assert total == sent
    instances = prom.query('count by (service_instance_id) (target_info{job="fleet"})')
    assert len(instances) == 2

    # kill one worker: its target goes; the restarted worker gets a port and a new identity
    victim = sorted(first)[0]
    old_ids = {r["metric"]["service_instance_id"] for r in instances}
    os.kill(victim, signal.SIGKILL)
    renewed = wait_until(
        lambda: (t := running.targets()) and victim not in t and len(t) == 2 and t,
        timeout=40,
        message="the restarted worker's target, and the killed one's gone",
    )
    (newcomer,) = set(renewed) - set(first)
    running.metrics_port(newcomer)  # the restarted worker got a port of the range

    def rediscovered() -> bool:
        up = up_targets()
        return bool(up) and str(victim) not in up and str(newcomer) in up  # type: ignore[operator]

    wait_until(rediscovered, timeout=30, message="Prometheus to drop the killed worker")
    new_ids = wait_until(
        lambda: (
            (
                ids := {
                    r["metric"]["service_instance_id"]
                    for r in prom.query(f'target_info{{job="fleet",pid="{newcomer}"}}')
                }
            )
            and ids
        ),
        timeout=20,
        message="the new worker's target_info",
    )
    assert not new_ids & old_ids


def _serve_on_both_workers(port: int, pids: set[int], limit: int = 400) -> Counter[int]:
    """POST until both workers answered at least 5 calls (the kernel picks who accepts):
    how many calls each pid answered."""
    answered: Counter[int] = Counter()
    while len(answered) < 2 or min(answered.values()) < 5:
        assert answered.total() < limit, f"one worker answered everything: {answered}"
        answered[_post(port, f"x{answered.total()}")["pid"]] += 1
    assert set(answered) == pids
    return answered


def test_uvicorn_workers_push_otlp_as_two_resources_that_add_up(
    engine: Callable[..., Engine], otlp_receiver: OtlpReceiver
) -> None:
    running = engine(
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.http_endpoint,
        OTEL_METRIC_EXPORT_INTERVAL="600000",  # no periodic export: the exit's must carry it all
    )
    # what a Kubernetes liveness and readiness probe ask (docs/deployment.md)
    for path in ("/health/live", "/health/ready"):
        status, _ = http_request("GET", f"http://127.0.0.1:{running.port}{path}")
        assert status == 200, path
    answered = _serve_on_both_workers(running.port, set(running.targets()))
    # uvicorn ends each worker (after its graceful shutdown) by re-raising SIGTERM with the
    # default action, which skips atexit: modelwatch's SIGTERM hook exports first
    assert running.process.stop(signal.SIGTERM, timeout=20) == 0
    assert not running.process.leaked  # every worker exited by itself
    # the workers are gone: what they exported has arrived, nothing to wait for
    points = [
        p
        for p in otlp_receiver.metric_points("gen_ai.client.operation.duration")
        if p.attributes.get("modelwatch.origin") != "probe"
    ]
    latest: dict[tuple[int, str, frozenset[tuple[str, Any]]], int] = {}
    starts: dict[tuple[int, str, frozenset[tuple[str, Any]]], set[int]] = {}
    for point in points:
        assert point.temporality == "CUMULATIVE"
        series = (
            int(point.resource["process.pid"]),
            str(point.resource["service.instance.id"]),
            frozenset(point.attributes.items()),
        )
        latest[series] = max(latest.get(series, 0), point.count or 0)
        starts.setdefault(series, set()).add(int(point.raw.start_time_unix_nano))  # type: ignore[attr-defined]
    assert all(len(s) == 1 for s in starts.values()), "a cumulative series was reset"
    per_pid: Counter[int] = Counter()
    for (pid, _, _), count in latest.items():
        per_pid[pid] += count
    assert per_pid == answered  # each worker's cumulative count: exactly the calls it answered
    identities = {(pid, instance) for pid, instance, _ in latest}
    assert len(identities) == 2  # one resource per worker...
    assert len({instance for _, instance in identities}) == 2  # ...with its own instance id


def test_gunicorn_preload_workers_forked_after_configure_are_each_discovered(
    engine: Callable[..., Engine], prometheus_server: PrometheusFactory
) -> None:
    pytest.importorskip("gunicorn")
    # the master ran configure() (it holds the first port); each forked worker binds its own
    running = engine(kind="gunicorn", processes=3)
    master = running.process.pid
    first = running.targets()
    assert master in first
    assert len(set(first.values())) == 3
    prom = prometheus_server(file_sd_config("fleet", running.sd_dir))
    prom.wait_for_targets_up(3, timeout=30)
    sent = 12
    pids = {_post(running.port, f"p{i}")["pid"] for i in range(sent)}
    assert master not in pids
    wait_until(
        lambda: prom.query_value(USER_CALLS) == sent,
        timeout=30,
        message=f"the sum over the forked workers to reach {sent}",
    )
    workers = prom.query(
        f'count by (service_instance_id) (target_info{{job="fleet",pid!="{master}"}})'
    )
    assert len(workers) == 2  # a new identity after fork, one per worker
    # (the master records nothing: its page has no series, hence no target_info)
    victim = next(pid for pid in sorted(first) if pid != master)
    os.kill(victim, signal.SIGKILL)
    renewed = wait_until(
        lambda: (t := running.targets()) and victim not in t and len(t) == 3 and t,
        timeout=40,
        message="gunicorn's replacement worker registered, the killed one's file gone",
    )
    (newcomer,) = set(renewed) - set(first)
    assert renewed[newcomer] not in {v for k, v in first.items() if k != victim}


def _ready_on_page(port: int) -> float | None:
    """``modelwatch.health.ready`` on one process's own /metrics page (1: /ready says 200)."""
    status, page = http_request("GET", f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    for line in page.decode().splitlines():
        if line.startswith("modelwatch_health_ready") and not line.startswith("#"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_every_worker_answers_health_from_the_shared_breaker_state(
    engine: Callable[..., Engine], redis_server: RedisServer
) -> None:
    import redis

    import modelwatch
    from modelwatch.resilience import redis_storage

    url = redis_server.fresh_url()
    running = engine(REDIS_URL=url)
    ports = [running.metrics_port(pid) for pid in running.targets()]
    wait_until(
        lambda: [_ready_on_page(p) for p in ports] == [1.0, 1.0],
        timeout=20,
        message="both workers ready",
    )

    # another process (here: the test) opens the engine's breaker in the shared Redis (the
    # router names it "<router>/<backend>"); the workers themselves never see a failure
    def model_down(text: str) -> str:
        raise ConnectionError("model endpoint refused the connection")

    elsewhere = modelwatch.circuit(
        "code_review/google/flan-t5-large",
        modelwatch.BreakerPolicy(
            consecutive_failures=3,
            open_s=30.0,
            storage=redis_storage(redis.Redis.from_url(url, decode_responses=False)),
        ),
    )
    guarded = elsewhere(model_down)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            guarded("x")
    assert elsewhere.breaker.state == "open"
    # each worker's own page (its own port) says it is not ready, and /ready answers 503
    wait_until(
        lambda: [_ready_on_page(p) for p in ports] == [0.0, 0.0],
        timeout=SYNC_DEADLINE_S,
        message="both workers to report the shared breaker open",
    )
    for _ in range(4):
        status, body = http_request("GET", f"http://127.0.0.1:{running.port}/health/ready")
        assert status == 503, body
