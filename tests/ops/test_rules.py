"""The generated Prometheus rules: valid for promtool, and every alert unit-tested.

The promtool unit tests live in data/*.test.yml, written against the default options; each
alert must have a case where it fires and one where it stays quiet (pinned below).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelwatch import semconv
from modelwatch.ops._promql import Queries
from modelwatch.ops._rules_regressions import recording_rules
from modelwatch.ops.promnames import COLLECTOR, PLAIN, label_name, metric_name
from modelwatch.ops.rules import (
    GROUPS,
    BurnWindow,
    RuleOptions,
    build_alerts,
    render_rules,
    rule_groups,
)
from support.servers import require_server

DATA = Path(__file__).parent / "data"
RULES_FILE = "modelwatch-alerts.yml"
ALERT_NAMES = [a.name for a in build_alerts()]


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    promtool = require_server("promtool")
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _unit_tests() -> list[tuple[str, dict[str, Any]]]:
    """(file name, alert_rule_test case) for every case in data/*.test.yml."""
    cases = []
    for path in sorted(DATA.glob("*.test.yml")):
        document = yaml.safe_load(path.read_text())
        assert document["rule_files"] == [RULES_FILE], path
        for test in document["tests"]:
            cases += [(path.name, case) for case in test["alert_rule_test"]]
    return cases


VARIANTS = {
    "default": RuleOptions(),
    "scaled-for-tests": RuleOptions(evaluation_interval_s=1).scaled(60),
    "collector-names": RuleOptions(naming=COLLECTOR, selector='job=~"engine|worker"'),
    "no-suffixes": RuleOptions(naming=PLAIN, service_label="service", slo_target=0.995),
    "daily-budgets": RuleOptions(budget_period="day", extra_labels={"team": "ml"}),
    "weekly-budgets": RuleOptions(budget_period="week", error_rate_ignore_kinds=()),
    "no-slow-burn": RuleOptions(slo_slow_burn=()),
}


@pytest.mark.parametrize("options", VARIANTS.values(), ids=VARIANTS.keys())
def test_promtool_check_rules_accepts_every_variant(tmp_path: Path, options: RuleOptions) -> None:
    path = tmp_path / RULES_FILE
    path.write_text(render_rules(options))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    recorded = sum(len(r) for r in recording_rules(Queries(options)).values())
    assert f"SUCCESS: {len(build_alerts(options)) + recorded} rules found" in result.stdout


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    (tmp_path / RULES_FILE).write_text(render_rules())
    files = []
    for path in sorted(DATA.glob("*.test.yml")):
        shutil.copy(path, tmp_path / path.name)
        files.append(path.name)
    result = _promtool("test", "rules", *files, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files), result.stdout


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_every_alert_has_a_firing_and_a_quiet_unit_test(name: str) -> None:
    cases = [case for _, case in _unit_tests() if case["alertname"] == name]
    firing = [c for c in cases if c["exp_alerts"]]
    quiet = [c for c in cases if not c["exp_alerts"]]
    assert firing, f"no promtool case where {name} fires"
    assert quiet, f"no promtool case where {name} stays quiet"
    for case in firing:  # the numbers and the model reach the operator
        for alert in case["exp_alerts"]:
            annotations = alert["exp_annotations"]
            assert set(annotations) == {"summary", "description", "runbook_url"}
            assert annotations["runbook_url"].endswith(".md")


def test_unit_tests_name_only_generated_alerts() -> None:
    assert {case["alertname"] for _, case in _unit_tests()} <= set(ALERT_NAMES)


def test_the_alert_set() -> None:
    assert ALERT_NAMES == [
        "ModelwatchHighLatency",
        "ModelwatchHungCalls",
        "ModelwatchErrorRateHigh",
        "ModelwatchAuthFailing",
        "ModelwatchRateLimited",
        "ModelwatchRateLimitQuotaLow",
        "ModelwatchLatencyRegression",
        "ModelwatchErrorBudgetBurnFast",
        "ModelwatchErrorBudgetBurnSlow",
        "ModelwatchCircuitOpen",
        "ModelwatchAllCircuitsOpen",
        "ModelwatchFailovers",
        "ModelwatchHealthCheckDown",
        "ModelwatchNotReady",
        "ModelwatchBudgetNearlySpent",
        "ModelwatchBudgetExhausted",
        "ModelwatchBudgetForecastOverrun",
        "ModelwatchTelemetryAbsent",
        "ModelwatchMemoryGrowth",
        "ModelwatchQualityDrop",
        "ModelwatchAccuracyDrop",
        "ModelwatchPrecisionDrop",
        "ModelwatchRecallDrop",
        "ModelwatchDriftDetected",
        "ModelwatchModelAnomalous",
        "ModelwatchCanaryRolledBack",
        "ModelwatchErrorRateAnomalous",
        "ModelwatchLatencyAnomalous",
    ]
    symptoms = {a.name for a in build_alerts() if a.symptom}
    assert symptoms == {
        "ModelwatchHighLatency",
        "ModelwatchErrorRateHigh",
        "ModelwatchHealthCheckDown",
        "ModelwatchErrorRateAnomalous",
        "ModelwatchLatencyAnomalous",
    }


def test_every_rule_has_severity_summary_description_and_runbook() -> None:
    options = RuleOptions(runbook_url="https://runbooks.example/modelwatch/")
    document = rule_groups(options)
    groups = document["groups"]
    assert isinstance(groups, list)
    assert [g["name"] for g in groups] == list(GROUPS)
    for group in groups:
        for rule in group["rules"]:
            if "record" in rule:  # recording rules (model regressions) have no annotations
                continue
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            annotations = rule["annotations"]
            assert annotations["summary"]
            assert annotations["description"]
            slug = next(a.slug for a in build_alerts() if a.name == rule["alert"])
            assert annotations["runbook_url"] == f"https://runbooks.example/modelwatch/{slug}.md"


def test_rendered_yaml_is_the_mapping() -> None:
    options = VARIANTS["collector-names"]
    assert yaml.safe_load(render_rules(options)) == rule_groups(options)


def _metric_names_in(text: str) -> set[str]:
    exprs = " ".join(str(r["expr"]) for g in yaml.safe_load(text)["groups"] for r in g["rules"])
    return set(re.findall(r"\b(?:gen_ai|modelwatch)_[a-z_]+\b", exprs))


@pytest.mark.parametrize("naming", [COLLECTOR, PLAIN], ids=lambda n: n.name)
def test_rules_use_only_names_translated_from_semconv(naming: Any) -> None:
    known: set[str] = set()
    for spec in semconv.METRICS:
        name = metric_name(spec, naming)
        known |= {name, f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    labels = {label_name(key) for key in semconv.METRIC_ATTRIBUTE_ALLOWLIST}
    used = _metric_names_in(render_rules(RuleOptions(naming=naming))) - labels
    assert used <= known, used - known
    assert "modelwatch_circuit_state" in used  # a state: no `_ratio`, whatever the naming
    assert "modelwatch_budget_used" + ("_ratio" if naming is COLLECTOR else "") in used


def test_selector_and_service_label_reach_every_selector() -> None:
    text = render_rules(RuleOptions(selector='env="prod"', service_label="service"))
    for group in yaml.safe_load(text)["groups"]:
        for rule in group["rules"]:
            expr = rule["expr"]
            selectors = re.findall(r"\b(?:gen_ai|modelwatch|process)_[a-z_]+(\{[^}]*\})?\[?", expr)
            name = rule.get("alert", rule.get("record"))
            raw = re.findall(r"\b(?:gen_ai|modelwatch|process)_[a-z_]+[{\[]", expr)
            if not raw and "modelwatch:" in expr:
                continue  # reads recorded series only: their recording rules select
            assert selectors, name
            assert expr.count('env="prod"') >= 1, name
            assert "job" not in expr, name


def test_scaled_options_shrink_windows_but_not_thresholds() -> None:
    fast = RuleOptions().scaled(60)
    assert fast.latency_window_s == 5
    assert fast.latency_threshold_s == 30.0
    assert fast.hung_call_for_s == 0
    assert fast.regression_offset_s == 1440
    assert fast.slo_fast_burn[0] == BurnWindow(60, 5, 14.4)
    assert "[5s]" in render_rules(fast)
    # the regression rules' durations scale too, their thresholds in seconds do not
    assert (fast.regressions.drift_for_s, fast.regressions.canary_window_s) == (15, 60)
    assert fast.regressions.latency_min_s == RuleOptions().regressions.latency_min_s


@pytest.mark.parametrize(
    "bad",
    [
        {"slo_target": 1.0},
        {"latency_quantile": 0.0},
        {"service_label": "not a label"},
        {"budget_period": "year"},
    ],
)
def test_invalid_options_raise(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RuleOptions(**bad)
