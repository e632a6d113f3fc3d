"""The generated Grafana dashboards: structure, variables and queries (offline checks).

The queries run against a real Prometheus in test_end_to_end.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

pytest.importorskip("grafana_foundation_sdk")

from modelwatch import semconv
from modelwatch.ops.dashboards import (
    DASHBOARDS,
    DashboardOptions,
    dashboard_queries,
    render_dashboard,
)
from modelwatch.ops.promnames import COLLECTOR, PLAIN, SDK, metric_name


def _board(name: str, options: DashboardOptions | None = None) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(render_dashboard(name, options))  # type: ignore[arg-type]
    return board


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_is_importable_grafana_json(name: str) -> None:
    board = _board(name)
    assert board["uid"] == DASHBOARDS[name]
    assert board["title"].startswith("modelwatch / ")
    assert "id" not in board or board["id"] is None
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert all(i > 0 for i in ids)
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["title"]
        assert panel["description"]
        assert [t["refId"] for t in panel["targets"]] == [
            chr(65 + i) for i in range(len(panel["targets"]))
        ]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_template_variables(name: str) -> None:
    variables = {v["name"]: v for v in _board(name)["templating"]["list"]}
    assert list(variables) == ["datasource", "service", "model", "analysis"]
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["multi"] is (name == "overview")
    for key in ("service", "model", "analysis"):
        assert variables[key]["query"].startswith("label_values(")
    for query in dashboard_queries(render_dashboard(name)):  # type: ignore[arg-type]
        assert 'job=~"$service"' in query


def test_overview_covers_what_operators_asked_for() -> None:
    titles = {p["title"] for p in _board("overview")["panels"]}
    assert {
        "Availability",
        "Requests",
        "Latency p50 / p95 / p99",
        "Errors by kind",
        "Tokens",
        "Cost",
        "Budgets",
        "Circuit breakers",
        "Failovers",
        "Health checks",
        "Hung calls: oldest call in flight",
    } <= titles
    breakers = next(p for p in _board("overview")["panels"] if p["title"] == "Circuit breakers")
    mapping = breakers["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {k: v["text"] for k, v in mapping.items()} == {
        "0": "closed",
        "1": "half-open",
        "2": "open",
    }


@pytest.mark.parametrize("naming", [SDK, COLLECTOR, PLAIN], ids=lambda n: n.name)
def test_queries_use_names_translated_from_semconv(naming: Any) -> None:
    known: set[str] = set()
    for spec in semconv.METRICS:
        name = metric_name(spec, naming)
        known |= {name, f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    text = render_dashboard("overview", DashboardOptions(naming=naming))
    used = set()
    for query in dashboard_queries(text):
        used |= set(re.findall(r"\b((?:gen_ai|modelwatch)_[a-z_]+)\{", query))
    assert used
    assert used <= known, used - known


def test_selector_and_service_label_options() -> None:
    options = DashboardOptions(selector='env="prod"', service_label="service", refresh="1m")
    board = _board("model", options)
    assert board["refresh"] == "1m"
    for query in dashboard_queries(render_dashboard("model", options)):
        assert 'env="prod"' in query
        assert 'service=~"$service"' in query
        assert "job" not in query


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_grafanas_own_schema_reads_the_dashboard_back_unchanged(name: str) -> None:
    """Offline stand-in for an import: the SDK's decoder (Grafana's schema) reads every field."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    text = render_dashboard(name)  # type: ignore[arg-type]
    decoded = Dashboard.from_json(json.loads(text))
    assert JSONEncoder(sort_keys=True, indent=2).encode(decoded) + "\n" == text
    for panel in json.loads(text)["panels"]:
        if panel["type"] != "row":
            assert isinstance(panel["options"], dict), panel["title"]
