"""The server fixtures of tests/support/servers/ really start, answer and stop real servers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from support.servers import (
    AlertmanagerFactory,
    AlertmanagerServer,
    CeleryWorkerFactory,
    PrometheusFactory,
    PrometheusServer,
    RedisServer,
    WebhookReceiver,
    alertmanager_config,
    free_port,
    http_request,
    listening_addresses,
    require_server,
    wait_until,
)

pytestmark = pytest.mark.servers


def _stat(pid: int) -> str:
    """`ps -o stat=` of a PID: empty when the process is gone."""
    result = subprocess.run(
        ["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return result.stdout.strip()


@dataclass
class AlertingStack:
    """A /metrics endpoint scraped by Prometheus, whose alerts go via Alertmanager to a webhook."""

    target: str
    gauge: Gauge
    webhook: WebhookReceiver
    alertmanager: AlertmanagerServer
    prometheus: PrometheusServer


@pytest.fixture(scope="module")
def alerting_stack(
    module_prometheus_server: PrometheusFactory, module_alertmanager_server: AlertmanagerFactory
) -> Iterator[AlertingStack]:
    """Shared by the tests of this module: Prometheus discovers targets and Alertmanagers only
    every 5 s, so one stack that all wait on together saves that wait per test."""
    registry = CollectorRegistry()
    gauge = Gauge("modelwatch_smoke_value", "A value for the smoke test", registry=registry)
    gauge.set(42)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    webhook = WebhookReceiver()
    try:
        target = f"127.0.0.1:{server.server_port}"
        am = module_alertmanager_server(alertmanager_config(webhook.url))
        prom = module_prometheus_server(
            scrape_targets=[target], rules=RULES_ALWAYS_FIRING, alertmanagers=[am]
        )
        yield AlertingStack(target, gauge, webhook, am, prom)
    finally:
        webhook.close()
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- helpers ----------------------------------------------------------------------------------


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        assert sock.getsockname() == ("127.0.0.1", port)


def test_require_server_skips_with_a_clear_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELWATCH_REQUIRE_SERVERS", raising=False)
    with pytest.raises(
        pytest.skip.Exception,
        match=r"no-such-server not installed .*"
        r"MODELWATCH_REQUIRE_SERVERS=1 to make this a failure",
    ):
        require_server("no-such-server")


def test_require_server_fails_when_servers_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELWATCH_REQUIRE_SERVERS", "1")
    with pytest.raises(pytest.fail.Exception, match="no-such-server not installed"):
        require_server("no-such-server")


def test_wait_until_returns_the_value_or_times_out() -> None:
    calls = iter([0, 0, 7])
    assert wait_until(lambda: next(calls), timeout=5, interval=0.001) == 7
    with pytest.raises(AssertionError, match=r"timed out after 0\.05 s waiting for never"):
        wait_until(lambda: None, timeout=0.05, message="never")


# -- Redis ------------------------------------------------------------------------------------


def test_redis_ping_set_get(redis_server: RedisServer) -> None:
    assert redis_server.host == "127.0.0.1"
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    with redis.Redis.from_url(redis_server.fresh_url()) as client:
        assert client.ping() is True
        client.set("test_servers:key", b"value")
        assert client.get("test_servers:key") == b"value"


def test_redis_fresh_url_is_a_distinct_empty_database(redis_server: RedisServer) -> None:
    first, second = redis_server.fresh_url(), redis_server.fresh_url()
    assert first != second
    with redis.Redis.from_url(first) as a, redis.Redis.from_url(second) as b:
        a.set("shared-name", b"1")
        assert b.get("shared-name") is None
        assert a.dbsize() == 1


def test_redis_server_factory_gives_a_private_server_to_stop(
    redis_server_factory: Callable[[], RedisServer], redis_server: RedisServer
) -> None:
    private = redis_server_factory()
    assert private.port != redis_server.port
    assert private.command(["PING"]) == [b"+PONG"]
    private.stop()
    assert _stat(private.process.pid) == ""
    with pytest.raises(ConnectionRefusedError):
        private.command(["PING"])
    private.stop()  # harmless twice


def test_redis_listens_on_loopback_only(redis_server: RedisServer) -> None:
    with redis.Redis.from_url(redis_server.url) as client:
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert client.config_get("save")["save"] == ""


# -- Prometheus and Alertmanager --------------------------------------------------------------


def test_prometheus_scrapes_a_prometheus_client_endpoint(alerting_stack: AlertingStack) -> None:
    prom, target = alerting_stack.prometheus, alerting_stack.target
    assert prom.url == f"http://127.0.0.1:{prom.port}"
    targets = prom.wait_for_targets_up(1)
    assert targets[0]["scrapeUrl"] == f"http://{target}/metrics"
    assert prom.wait_for_value("modelwatch_smoke_value", lambda v: v == 42) == 42.0
    alerting_stack.gauge.set(7)
    assert prom.wait_for_value("modelwatch_smoke_value", lambda v: v != 42) == 7.0


def test_prometheus_reload_loads_rules_and_fires_an_alert(
    prometheus_server: PrometheusFactory,
) -> None:
    prom = prometheus_server()
    assert prom.rules() == []
    prom.reload(rules=RULES_ALWAYS_FIRING)
    groups = prom.wait_for_rule_groups(1)
    assert groups[0]["rules"][0]["name"] == "SmokeAlwaysFiring"
    alert = prom.wait_for_alert("SmokeAlwaysFiring", "firing", timeout=15)
    assert alert["labels"]["severity"] == "page"


def test_prometheus_rejects_a_broken_reload(prometheus_server: PrometheusFactory) -> None:
    prom = prometheus_server()
    with pytest.raises(AssertionError, match="reload failed"):
        prom.reload("global: {scrape_interval: not-a-duration}\n")


def test_alertmanager_accepts_and_lists_an_alert(alertmanager_server: AlertmanagerFactory) -> None:
    am = alertmanager_server()
    am.post_alerts(
        [
            {
                "labels": {"alertname": "SmokeApi", "model": "m1"},
                "annotations": {"summary": "posted by a test"},
            }
        ]
    )
    alert = am.wait_for_alert("SmokeApi")
    assert alert["labels"]["model"] == "m1"
    assert alert["annotations"]["summary"] == "posted by a test"


def test_prometheus_alert_reaches_the_webhook_through_alertmanager(
    alerting_stack: AlertingStack,
) -> None:
    webhook = alerting_stack.webhook
    alert = webhook.wait_for_alert("SmokeAlwaysFiring", "firing", timeout=20)
    assert alert["labels"]["severity"] == "page"
    assert webhook.payloads()[0]["version"] == "4"
    assert alerting_stack.alertmanager.wait_for_alert("SmokeAlwaysFiring")["status"]["state"] == (
        "active"
    )
    assert alerting_stack.prometheus.wait_for_alert("SmokeAlwaysFiring")["state"] == "firing"


def test_webhook_receiver_collects_posted_json(webhook_receiver: WebhookReceiver) -> None:
    payload = {"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "Direct"}}]}  # fmt: skip
    status, _ = http_request(
        "POST", webhook_receiver.url, json.dumps(payload).encode(),
        {"Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 200
    assert webhook_receiver.payloads() == [payload]
    assert webhook_receiver.wait_for_alert("Direct")["labels"] == {"alertname": "Direct"}


def test_servers_are_stopped_and_reaped(
    prometheus_server: PrometheusFactory, alertmanager_server: AlertmanagerFactory
) -> None:
    am = alertmanager_server()
    prom = prometheus_server()
    assert _stat(am.process.pid)
    assert _stat(prom.process.pid)
    am.stop()
    prom.stop()
    assert (am.process.popen.returncode, prom.process.popen.returncode) == (0, 0)
    assert _stat(am.process.pid) == ""
    assert _stat(prom.process.pid) == ""


def test_servers_listen_on_loopback_only(
    redis_server: RedisServer, alerting_stack: AlertingStack
) -> None:
    for pid, port in [
        (redis_server.process.pid, redis_server.port),
        (alerting_stack.prometheus.process.pid, alerting_stack.prometheus.port),
        (alerting_stack.alertmanager.process.pid, alerting_stack.alertmanager.port),
    ]:
        addresses = listening_addresses(pid)
        assert ("127.0.0.1", port) in addresses
        assert {host for host, _ in addresses} == {"127.0.0.1"}, addresses


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES_ALWAYS_FIRING)
    result = subprocess.run(
        [require_server("promtool"), "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rules found" in result.stdout


RULES_ALWAYS_FIRING = """
groups:
  - name: smoke
    interval: 1s
    rules:
      - alert: SmokeAlwaysFiring
        expr: vector(1)
        labels: {severity: page}
        annotations: {summary: always firing}
"""


# -- Celery -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pool", "concurrency"), [("solo", None), ("prefork", 2)], ids=["solo", "prefork2"]
)
def test_celery_worker_runs_a_task(
    celery_worker: CeleryWorkerFactory, pool: str, concurrency: int | None
) -> None:
    worker = celery_worker("support.celery_app_smoke", pool=pool, concurrency=concurrency)
    assert worker.call("smoke.add", 2, 3) == 5
    task_pid = worker.call("smoke.pid")
    children = worker.children()
    if pool == "solo":
        assert task_pid == worker.pid
        assert children == []
    else:
        assert task_pid in children
        assert len(children) == 2
    output = worker.stop()
    assert worker.process.popen.returncode == 0
    assert "Task smoke.add[" in output
    assert "succeeded" in output
    assert _stat(worker.pid) == ""
    assert all(_stat(child) in ("", "Z") for child in children)


def test_celery_worker_env_and_extra_args(celery_worker: CeleryWorkerFactory) -> None:
    worker = celery_worker(env={"MODELWATCH_SMOKE": "from-env"}, extra_args=["--queues=smoke-q"])
    with worker.client() as app:
        result = app.send_task("smoke.env", args=["MODELWATCH_SMOKE"], queue="smoke-q")
        assert result.get(timeout=15) == "from-env"
        result.forget()
    assert os.environ.get("MODELWATCH_SMOKE") is None


# -- tests/servers_setup.py -------------------------------------------------------------------


def test_servers_setup_is_quick_when_everything_is_there(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import servers_setup

    if servers_setup.missing_binaries():
        pytest.skip("servers not installed here")
    started = time.monotonic()
    assert servers_setup.main() == 0
    assert time.monotonic() - started < 1
    assert capsys.readouterr().out.startswith("servers_setup: found prometheus, promtool")


def test_servers_setup_never_fails_the_build(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import servers_setup

    monkeypatch.setattr(servers_setup, "find_binary", lambda name: None)
    monkeypatch.setattr(servers_setup.os, "geteuid", lambda: 1000)
    assert servers_setup.main() == 0
    assert "not root, so not installing" in capsys.readouterr().out

    def broken_install(log: Path) -> None:
        raise subprocess.CalledProcessError(100, ["apt-get", "install"])

    monkeypatch.setattr(servers_setup.os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        servers_setup, "find_binary", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None
    )
    monkeypatch.setattr(servers_setup, "install", broken_install)
    assert servers_setup.main() == 0
    out = capsys.readouterr().out
    assert f"installing {' '.join(servers_setup.PACKAGES)} failed" in out
    assert "returned non-zero exit status 100" in out


@pytest.mark.parametrize("previous", [None, "#!/bin/sh\nexit 0\n"], ids=["absent", "allowing"])
def test_servers_setup_installs_with_services_denied_then_restores_policy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, previous: str | None
) -> None:
    import servers_setup

    policy = tmp_path / "policy-rc.d"
    if previous is not None:
        policy.write_text(previous)
        policy.chmod(0o755)
    monkeypatch.setattr(servers_setup, "POLICY_RC_D", policy)
    seen: list[tuple[list[str], int]] = []

    def fake_apt(args: list[str], log: Path) -> None:
        denied = subprocess.run([str(policy)], check=False).returncode
        seen.append((args, denied))

    monkeypatch.setattr(servers_setup, "_run_apt", fake_apt)
    servers_setup.install(tmp_path / "apt.log")
    assert seen == [
        (["update"], 101),
        (["install", "-y", "--no-install-recommends", *servers_setup.PACKAGES], 101),
    ]
    if previous is None:
        assert not policy.exists()
    else:
        assert policy.read_text() == previous
