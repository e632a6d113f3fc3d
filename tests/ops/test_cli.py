"""``modelwatch rules`` and ``modelwatch dashboard`` through the real dispatcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from modelwatch.cli import main
from modelwatch.ops.rules import RuleOptions, build_alerts, render_rules
from modelwatch.ops.rules_cli import options_from_settings


def test_rules_prints_the_default_rule_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules"]) == 0
    assert capsys.readouterr().out == render_rules()


def test_rules_options(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "rules",
        "--names",
        "plain",
        "--selector",
        'env="prod"',
        "--service-label",
        "service",
        "--slo",
        "0.995",
        "--latency-threshold",
        "12",
        "--runbook-url",
        "https://rb.example",
        "--evaluation-interval",
        "30s",
        "--label",
        "team=ml",
        "--set",
        "latency_window=10m",
        "--set",
        "error_rate_ignore_kinds=rate_limited,cancelled",
    ]
    assert main(argv) == 0
    document = yaml.safe_load(capsys.readouterr().out)
    first = document["groups"][0]
    assert first["interval"] == "30s"
    latency = first["rules"][0]
    assert 'gen_ai_client_operation_duration_bucket{env="prod"}[10m]' in latency["expr"]
    assert "by (service, gen_ai_request_model, le)" in latency["expr"]
    assert latency["expr"].endswith("> 12")
    assert latency["labels"] == {"severity": "warning", "team": "ml"}
    assert latency["annotations"]["runbook_url"] == "https://rb.example/high-latency.md"
    errors = first["rules"][2]["expr"]
    assert 'error_type!~"rate_limited|cancelled"' in errors
    burn = document["groups"][1]["rules"][0]["expr"]
    assert "vector(0.072)" in burn  # 14.4 x (1 - 0.995): calls without a tier


def test_rules_scale_for_tests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--scale", "60"]) == 0
    assert capsys.readouterr().out == render_rules(RuleOptions().scaled(60))


def test_rules_list_and_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == [a.name for a in build_alerts()]
    target = tmp_path / "alerts.yml"
    assert main(["rules", "-o", str(target)]) == 0
    assert target.read_text() == render_rules()


@pytest.mark.parametrize(
    "argv",
    [
        ["--set", "nope=1"],
        ["--set", "latency_window"],
        ["--set", "latency_window=5x"],
        ["--label", "novalue"],
        ["--slo", "2"],
    ],
)
def test_rules_bad_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", *argv]) == 2
    assert "modelwatch rules:" in capsys.readouterr().err


def test_settings_convert_by_field_type() -> None:
    options = options_from_settings(
        RuleOptions(),
        [
            "hung-call-threshold-s=120",
            "budget_period=day",
            "absent_lookback=2h",
            "evaluation_interval=15s",
        ],
    )
    assert options.hung_call_threshold_s == 120.0
    assert options.budget_period == "day"
    assert options.absent_lookback_s == 7200
    assert options.evaluation_interval_s == 15


def test_dashboard_prints_overview_and_model(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("grafana_foundation_sdk")
    assert main(["dashboard"]) == 0
    assert json.loads(capsys.readouterr().out)["uid"] == "modelwatch-overview"
    assert main(["dashboard", "model", "--names", "collector", "--refresh", "1m"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert board["uid"] == "modelwatch-model"
    assert board["refresh"] == "1m"
    assert "modelwatch_budget_used_ratio" in json.dumps(board)  # collector names
    assert "modelwatch_circuit_state_ratio" not in json.dumps(board)  # a state, not a ratio


def test_dashboard_output_dir(tmp_path: Path) -> None:
    pytest.importorskip("grafana_foundation_sdk")
    assert main(["dashboard", "--output-dir", str(tmp_path / "grafana")]) == 0
    names = sorted(p.name for p in (tmp_path / "grafana").iterdir())
    assert names == ["modelwatch-model.json", "modelwatch-overview.json"]
    target = tmp_path / "one.json"
    assert main(["dashboard", "-o", str(target)]) == 0
    assert json.loads(target.read_text())["uid"] == "modelwatch-overview"


def test_dashboard_without_the_sdk_says_which_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    for name in [m for m in sys.modules if m.startswith("grafana_foundation_sdk")] + [
        "grafana_foundation_sdk"
    ]:
        monkeypatch.setitem(sys.modules, name, None)
    assert main(["dashboard"]) == 1
    assert "pip install 'modelwatch[dashboards]'" in capsys.readouterr().err
