"""Prometheus 2.x on 127.0.0.1 with its HTTP API wrapped."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from support.servers._process import (
    LOCALHOST,
    ManagedProcess,
    _json_request,
    _mkdtemp,
    _ready_http,
    _Stack,
    _start_on_free_port,
    http_request,
    require_server,
    wait_until,
)

# --------------------------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------------------------


def _host_port(target: Any) -> str:
    """'127.0.0.1:9090' from a server object with `.url`, a URL or a host:port string."""
    text = str(getattr(target, "url", target))
    if "://" in text:
        return urllib.parse.urlsplit(text).netloc
    return text


def prometheus_config(
    *,
    scrape_targets: Sequence[Any] = (),
    rule_files: Sequence[str | Path] = (),
    alertmanagers: Sequence[Any] = (),
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    job_name: str = "test",
) -> str:
    """A prometheus.yml text (JSON is YAML) scraping `scrape_targets` ("host:port" or URLs)."""
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [],
    }
    if scrape_targets:
        config["scrape_configs"].append(
            {
                "job_name": job_name,
                "static_configs": [{"targets": [_host_port(t) for t in scrape_targets]}],
            }
        )
    if alertmanagers:
        config["alerting"] = {
            "alertmanagers": [
                {"static_configs": [{"targets": [_host_port(a) for a in alertmanagers]}]}
            ]
        }
    return json.dumps(config, indent=2)


def _write_prometheus_config(
    workdir: Path,
    config: str | None = None,
    *,
    rules: str | Mapping[str, Any] | None = None,
    rule_files: Sequence[str | Path] = (),
    **kwargs: Any,
) -> None:
    files = [str(path) for path in rule_files]
    if rules is not None:
        rules_path = workdir / "rules.yml"
        rules_path.write_text(rules if isinstance(rules, str) else json.dumps(rules, indent=2))
        files.append(str(rules_path))
    if config is None:
        config = prometheus_config(rule_files=files, **kwargs)
    (workdir / "prometheus.yml").write_text(config)


class PrometheusServer:
    """A Prometheus 2.x on 127.0.0.1 with its HTTP API wrapped; see `prometheus_server`."""

    def __init__(self, process: ManagedProcess, port: int, workdir: Path) -> None:
        self.process = process
        self.port = port
        self.host = LOCALHOST
        self.workdir = workdir
        self.url = f"http://{LOCALHOST}:{port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    def write_config(self, config: str | None = None, **kwargs: Any) -> None:
        """Write prometheus.yml (and rules.yml when `rules=` is given) into the server's dir.

        `config` is a whole prometheus.yml text; otherwise one is built from the keyword
        arguments of `prometheus_config`. `rules=` is a rule file's text (or a mapping, written
        as JSON), added to the rule files.
        """
        _write_prometheus_config(self.workdir, config, **kwargs)

    def reload(self, config: str | None = None, **kwargs: Any) -> None:
        """Optionally rewrite the config (same arguments as `write_config`), then POST /-/reload."""
        if config is not None or kwargs:
            self.write_config(config, **kwargs)
        status, body = http_request("POST", f"{self.url}/-/reload", timeout=10.0)
        if status != 200:
            raise AssertionError(f"Prometheus reload failed: HTTP {status}: {body.decode()}")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>?<params> and return its `data`; raises unless status is success."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        reply = _json_request("GET", f"{self.url}/api/v1/{path}{query}")
        if reply.get("status") != "success":
            raise AssertionError(f"Prometheus API {path} failed: {reply}")
        return reply["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the result list (`metric` labels and `value` [time, "text"] each)."""
        data = self.api("query", query=promql)
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_value(self, promql: str) -> float | None:
        """The value of an instant query with one result, None with none; >1 result is an error."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) > 1:
            raise AssertionError(f"{promql} returned {len(result)} series: {result}")
        return float(result[0]["value"][1])

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing): `labels`, `annotations`, `state`, `value`."""
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def rules(self) -> list[dict[str, Any]]:
        """Loaded rule groups, each with `name`, `file` and `rules` (with `health`, `state`)."""
        groups: list[dict[str, Any]] = self.api("rules")["groups"]
        return groups

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets, each with `scrapeUrl`, `health` ("up"/"down"/"unknown")."""
        targets: list[dict[str, Any]] = self.api("targets", state="active")["activeTargets"]
        return targets

    def wait_for_targets_up(self, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Wait until at least `count` targets exist and all of them are up."""

        def up() -> list[dict[str, Any]] | None:
            targets = self.targets()
            healthy = len(targets) >= count and all(t["health"] == "up" for t in targets)
            return targets if healthy else None

        return wait_until(up, timeout=timeout, message=f"{count} Prometheus target(s) up")

    def wait_for_value(
        self,
        promql: str,
        predicate: Callable[[float], bool] = lambda _: True,
        timeout: float = 20.0,
    ) -> float:
        """Poll `query_value(promql)` until it has a value satisfying `predicate`; return it."""

        def check() -> tuple[float] | None:
            value = self.query_value(promql)
            return (value,) if value is not None and predicate(value) else None

        return wait_until(check, timeout=timeout, message=f"a matching value of {promql}")[0]

    def wait_for_alert(
        self, name: str, state: str = "firing", timeout: float = 30.0
    ) -> dict[str, Any]:
        """Wait until alert `name` is in `state` ("pending" or "firing"); return the alert."""

        def find() -> dict[str, Any] | None:
            for alert in self.alerts():
                if alert["labels"].get("alertname") == name and alert["state"] == state:
                    return alert
            return None

        return wait_until(find, timeout=timeout, message=f"alert {name} to be {state}")

    def wait_for_rule_groups(self, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least `count` rule groups are loaded (after start or `reload()`)."""

        def loaded() -> list[dict[str, Any]] | None:
            groups = self.rules()
            return groups if len(groups) >= count else None

        return wait_until(loaded, timeout=timeout, message=f"{count} rule group(s) loaded")

    def stop(self) -> None:
        self.process.stop()


PrometheusFactory = Callable[..., PrometheusServer]


def _prometheus_factory(base: Path) -> tuple[PrometheusFactory, _Stack]:
    stack = _Stack()

    def start(config: str | None = None, **kwargs: Any) -> PrometheusServer:
        binary = require_server("prometheus")
        workdir = Path(_mkdtemp(base, "prometheus"))
        _write_prometheus_config(workdir, config, **kwargs)

        def argv(port: int) -> list[str]:
            return [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={LOCALHOST}:{port}",
                f"--web.external-url=http://{LOCALHOST}:{port}",
                "--web.enable-lifecycle",
                "--rules.alert.resend-delay=1s",
            ]

        process, port = _start_on_free_port(
            "prometheus", workdir, argv, lambda p: _ready_http(f"http://{LOCALHOST}:{p}/-/ready")
        )
        server = PrometheusServer(process, port, workdir)
        stack.push(server.stop)
        return server

    return start, stack


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[PrometheusFactory]:
    """Factory: start a Prometheus for this test; stopped when the test ends.

    Call with a whole prometheus.yml text, or with keyword arguments of `prometheus_config`
    plus `rules=` (a rule file's text):

        prom = prometheus_server(scrape_targets=["127.0.0.1:8000"], rules=RULES_YAML,
                                 alertmanagers=[am])
        prom.wait_for_targets_up()
        assert prom.wait_for_value("up") == 1
        prom.wait_for_alert("ModelDown")
    """
    start, stack = _prometheus_factory(tmp_path / "prometheus")
    try:
        yield start
    finally:
        stack.close()


@pytest.fixture(scope="module")
def module_prometheus_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrometheusFactory]:
    """Same factory as `prometheus_server`, but servers live until the test module ends.

    Share one server between the tests of a module and `reload(...)` it with their config.
    """
    start, stack = _prometheus_factory(tmp_path_factory.mktemp("prometheus"))
    try:
        yield start
    finally:
        stack.close()
