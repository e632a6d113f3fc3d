"""The checked-in examples/deploy/ and docs/runbooks/ are exactly what the generators produce.

Regenerate with:
    python -m modelwatch.ops.deploy examples/deploy
    python -m modelwatch.ops.runbooks docs/runbooks
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from modelwatch.ops.alertmanager import (
    AlertmanagerOptions,
    alertmanager_config,
    render_alertmanager,
)
from modelwatch.ops.deploy import DeployOptions, deploy_files, prometheus_config, render_prometheus
from modelwatch.ops.rules import RuleOptions, build_alerts
from modelwatch.ops.runbooks import RUNBOOKS, runbook_files
from support.servers import require_server

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "examples" / "deploy"
RUNBOOK_DIR = ROOT / "docs" / "runbooks"


@pytest.mark.parametrize("relative", sorted(deploy_files()))
def test_checked_in_deploy_file_matches_the_generator(relative: str) -> None:
    path = DEPLOY / relative
    assert path.exists(), f"{path} missing: run python -m modelwatch.ops.deploy examples/deploy"
    assert path.read_text() == deploy_files()[relative], (
        f"{path} differs from the generator: run python -m modelwatch.ops.deploy examples/deploy"
    )


def test_dashboards_are_among_the_deploy_files() -> None:
    pytest.importorskip("grafana_foundation_sdk")
    assert {"grafana/modelwatch-overview.json", "grafana/modelwatch-model.json"} <= set(
        deploy_files()
    )


@pytest.mark.parametrize("name", sorted(runbook_files()))
def test_checked_in_runbook_matches_the_generator(name: str) -> None:
    path = RUNBOOK_DIR / name
    assert path.exists(), f"{path} missing: run python -m modelwatch.ops.runbooks docs/runbooks"
    assert path.read_text() == runbook_files()[name], (
        f"{path} differs from the generator: run python -m modelwatch.ops.runbooks docs/runbooks"
    )


def test_every_alert_has_a_runbook_and_no_runbook_is_orphaned() -> None:
    alerts = build_alerts()
    assert set(RUNBOOKS) == {a.name for a in alerts}
    on_disk = {p.name for p in RUNBOOK_DIR.glob("*.md")} - {"README.md"}
    assert on_disk == {f"{a.slug}.md" for a in alerts}
    for alert in alerts:
        text = runbook_files()[f"{alert.slug}.md"]
        for heading in (
            "## What it means",
            "## How to confirm",
            "## What to do",
            "## How to tell it is over",
        ):
            assert heading in text, (alert.name, heading)
        assert alert.expr in text


def test_amtool_accepts_the_example_alertmanager_config() -> None:
    amtool = require_server("amtool")
    result = subprocess.run(
        [amtool, "check-config", str(DEPLOY / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 receivers" in result.stdout


def test_amtool_accepts_a_config_for_another_service_label(tmp_path: Path) -> None:
    amtool = require_server("amtool")
    path = tmp_path / "am.yml"
    path.write_text(
        render_alertmanager(
            AlertmanagerOptions(slack_api_url="http://127.0.0.1:1/slack", pagerduty_url=None),
            RuleOptions(service_label="service", slo_slow_burn=()),
        )
    )
    result = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_example_scrapes_each_process_once() -> None:
    """A static 127.0.0.1:9464 next to the file_sd job scraped the first worker of the port
    range twice (the sum over instances counted its calls double): discovery only, by default;
    a static target only when asked for."""
    (job,) = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"]
    assert "static_configs" not in job
    assert job["file_sd_configs"][0]["files"] == ["/var/lib/modelwatch/sd/*.json"]
    (single,) = prometheus_config(DeployOptions(targets=("127.0.0.1:9464",), sd_files=()))[
        "scrape_configs"
    ]  # type: ignore[index]
    assert single["static_configs"] == [{"targets": ["127.0.0.1:9464"]}]
    assert "file_sd_configs" not in single


def test_promtool_accepts_the_example_prometheus_config() -> None:
    promtool = require_server("promtool")
    result = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rules = yaml.safe_load((DEPLOY / "modelwatch-alerts.yml").read_text())
    count = sum(len(group["rules"]) for group in rules["groups"])
    assert count == len(build_alerts()) + 20  # + the model regressions' recording rules
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_routing_groups_by_model_and_routes_by_severity() -> None:
    config = alertmanager_config()
    route = config["route"]
    assert isinstance(route, dict)
    assert route["group_by"] == ["job", "gen_ai_request_model"]
    receivers = [(r["receiver"], r.get("matchers")) for r in route["routes"]]
    assert receivers == [
        ("pagerduty", ['severity="critical"']),
        ("slack", ['severity=~"critical|warning"']),
        ("email", ['severity=~"warning|info"']),
        ("webhook", None),
    ]
    assert all(r.get("continue") for r in route["routes"][:-1])
    assert yaml.safe_load(render_alertmanager()) == config


def test_circuit_open_inhibits_exactly_the_symptom_alerts_of_the_same_model() -> None:
    rules = alertmanager_config()["inhibit_rules"]
    assert isinstance(rules, list)
    first = rules[0]
    symptoms = sorted(a.name for a in build_alerts() if a.symptom)
    assert first["source_matchers"] == ['alertname="ModelwatchCircuitOpen"']
    (target,) = first["target_matchers"]
    assert sorted(target.removeprefix('alertname=~"').removesuffix('"').split("|")) == symptoms
    assert first["equal"] == ["job", "gen_ai_request_model"]


def test_prometheus_example_loads_the_rules_file() -> None:
    config = yaml.safe_load(render_prometheus())
    assert config["rule_files"] == ["modelwatch-alerts.yml"]
    assert config["global"] == {"scrape_interval": "15s", "evaluation_interval": "15s"}
