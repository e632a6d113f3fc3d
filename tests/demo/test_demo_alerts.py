"""The demo's alert evaluation against a real Prometheus: the generated rule file loaded as it
is, a ``/metrics`` page with an open circuit, and what :class:`AlertWatcher` reports."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from modelwatch import semconv
from modelwatch.demo.alerts import AlertWatcher, demo_rule_options, prometheus_config, rule_file
from modelwatch.demo.prometheus import Prometheus, find_or_install
from modelwatch.ops import rules
from modelwatch.ops.promnames import PromNames
from modelwatch.ops.rules import AlertRule
from support.servers import require_server  # type: ignore[import-not-found]

pytestmark = [pytest.mark.servers, pytest.mark.slow]


@pytest.fixture
def open_circuit_page() -> Iterator[int]:
    """A /metrics page where code_review's primary has its circuit open."""
    names = PromNames()
    registry = CollectorRegistry()
    state = Gauge(
        names.state, "circuit state", [names.circuit, names.router, names.model], registry=registry
    )
    state.labels("code_review/m", "code_review", "m").set(semconv.CIRCUIT_OPEN)
    state.labels("code_review/b", "code_review", "b").set(semconv.CIRCUIT_CLOSED)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_prometheus_fires_the_generated_rules_and_a_new_one_without_demo_code(
    open_circuit_page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_server("prometheus")
    extra = AlertRule(
        "ModelwatchSomethingNew", "modelwatch.telemetry", "vector(1)", 0, "info", "", ""
    )
    original = rules._telemetry_alerts
    monkeypatch.setattr(rules, "_telemetry_alerts", lambda q: [*original(q), extra])
    options = demo_rule_options(60.0, latency_threshold_s=0.5, hung_s=1.0)
    prometheus = Prometheus(
        find_or_install(io.StringIO()),
        prometheus_config([f"127.0.0.1:{open_circuit_page}"]),
        {"rules.yml": rule_file(options)},
    )
    changes: list[tuple[str, str, str, str]] = []
    try:
        prometheus.start()
        prometheus.wait_for_first_scrape()
        watcher = AlertWatcher(
            prometheus, options, time.time(), lambda *change: changes.append(change)
        )
        watcher.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not {
            "ModelwatchCircuitOpen",
            "ModelwatchSomethingNew",
        } <= {c[1] for c in changes}:
            time.sleep(0.2)
        watcher.stop()
        verdicts = {v.name: v for v in watcher.verdicts()}
    finally:
        prometheus.stop()
    assert ("firing", "ModelwatchCircuitOpen", "m / code_review", "value 2") in changes
    assert verdicts["ModelwatchCircuitOpen"].outcome == "fired"
    assert [s for s, _, _ in verdicts["ModelwatchCircuitOpen"].fired] == ["m / code_review"]
    assert verdicts["ModelwatchSomethingNew"].outcome == "fired"
    # one of two backends open is not "all open"; every rule evaluated without error
    assert verdicts["ModelwatchAllCircuitsOpen"].outcome == "quiet"
    assert not [v.name for v in verdicts.values() if v.outcome == "not evaluated"]
    assert len(verdicts) == len(rules.build_alerts(options))
