"""Alertmanager on 127.0.0.1 and a webhook receiver."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
# Alertmanager and a webhook receiver
# --------------------------------------------------------------------------------------------


def alertmanager_config(
    webhook_url: str | None = None,
    *,
    group_wait: str = "0s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
    send_resolved: bool = True,
) -> str:
    """An alertmanager.yml text routing everything to one webhook (or nowhere), fast timings."""
    receiver: dict[str, Any] = {"name": "default"}
    if webhook_url is not None:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": send_resolved}]
    config = {
        "route": {
            "receiver": "default",
            "group_by": ["alertname"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [receiver],
    }
    return json.dumps(config, indent=2)


class AlertmanagerServer:
    """An Alertmanager on 127.0.0.1 (no cluster port) with its v2 API wrapped."""

    def __init__(self, process: ManagedProcess, port: int, workdir: Path) -> None:
        self.process = process
        self.port = port
        self.host = LOCALHOST
        self.workdir = workdir
        self.url = f"http://{LOCALHOST}:{port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "alertmanager.yml"

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """POST /api/v2/alerts: each alert has `labels` (with alertname), maybe `annotations`."""
        _json_request("POST", f"{self.url}/api/v2/alerts", list(alerts))

    def alerts(self, *, active: bool = True, silenced: bool = True) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: each with `labels`, `annotations`, `status` {state}, `receivers`."""
        params = urllib.parse.urlencode({"active": active, "silenced": silenced}).lower()
        alerts: list[dict[str, Any]] = _json_request("GET", f"{self.url}/api/v2/alerts?{params}")
        return alerts

    def wait_for_alert(self, name: str, timeout: float = 15.0) -> dict[str, Any]:
        """Wait until an alert with alertname `name` is listed; return it."""

        def find() -> dict[str, Any] | None:
            return next((a for a in self.alerts() if a["labels"].get("alertname") == name), None)

        return wait_until(find, timeout=timeout, message=f"alert {name} in Alertmanager")

    def reload(self, config: str | None = None) -> None:
        """Optionally rewrite alertmanager.yml, then POST /-/reload."""
        if config is not None:
            self.config_path.write_text(config)
        status, body = http_request("POST", f"{self.url}/-/reload", timeout=10.0)
        if status != 200:
            raise AssertionError(f"Alertmanager reload failed: HTTP {status}: {body.decode()}")

    def stop(self) -> None:
        self.process.stop()


AlertmanagerFactory = Callable[..., AlertmanagerServer]


def _alertmanager_factory(base: Path) -> tuple[AlertmanagerFactory, _Stack]:
    stack = _Stack()

    def start(config: str | None = None) -> AlertmanagerServer:
        binary = require_server("prometheus-alertmanager")
        workdir = Path(_mkdtemp(base, "alertmanager"))
        (workdir / "alertmanager.yml").write_text(config or alertmanager_config())

        def argv(port: int) -> list[str]:
            return [
                binary,
                f"--config.file={workdir / 'alertmanager.yml'}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address={LOCALHOST}:{port}",
                f"--web.external-url=http://{LOCALHOST}:{port}",
                "--cluster.listen-address=",  # otherwise gossip binds all interfaces on :9094
            ]

        process, port = _start_on_free_port(
            "alertmanager", workdir, argv, lambda p: _ready_http(f"http://{LOCALHOST}:{p}/-/ready")
        )
        server = AlertmanagerServer(process, port, workdir)
        stack.push(server.stop)
        return server

    return start, stack


@pytest.fixture
def alertmanager_server(tmp_path: Path) -> Iterator[AlertmanagerFactory]:
    """Factory: start an Alertmanager with a config text (default: route to nowhere).

    hook = webhook_receiver
    am = alertmanager_server(alertmanager_config(hook.url))
    prom = prometheus_server(rules=RULES, alertmanagers=[am])   # start AM first
    hook.wait_for_alert("ModelDown")
    """
    start, stack = _alertmanager_factory(tmp_path / "alertmanager")
    try:
        yield start
    finally:
        stack.close()


@pytest.fixture(scope="module")
def module_alertmanager_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AlertmanagerFactory]:
    """Same factory as `alertmanager_server`, servers living until the test module ends."""
    start, stack = _alertmanager_factory(tmp_path_factory.mktemp("alertmanager"))
    try:
        yield start
    finally:
        stack.close()


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 storing every JSON body POSTed to it (any path)."""

    def __init__(self) -> None:
        self._payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver._payloads.append(json.loads(body or b"null"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.url = f"http://{LOCALHOST}:{self.port}/webhook"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def payloads(self) -> list[dict[str, Any]]:
        """Every payload so far (Alertmanager webhook format 4: status, alerts, groupLabels...)."""
        with self._lock:
            return list(self._payloads)

    def alerts(self) -> list[dict[str, Any]]:
        """All alerts of all payloads, in order, each with `status`, `labels`, `annotations`."""
        return [alert for payload in self.payloads() for alert in payload.get("alerts", [])]

    def wait_for_alert(
        self, name: str, status: str = "firing", timeout: float = 30.0
    ) -> dict[str, Any]:
        """Wait until an alert `name` with `status` ("firing"/"resolved") arrived; return it."""

        def find() -> dict[str, Any] | None:
            return next(
                (
                    a
                    for a in self.alerts()
                    if a["labels"].get("alertname") == name and a["status"] == status
                ),
                None,
            )

        return wait_until(find, timeout=timeout, message=f"webhook alert {name} {status}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """An Alertmanager webhook target: `.url`, `.payloads()`, `.alerts()`, `.wait_for_alert()`."""
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
