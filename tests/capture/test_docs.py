"""docs/telemetry.md and modelwatch.semconv must agree: the page is the contract's documentation."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelwatch import semconv

DOC = (Path(__file__).resolve().parents[2] / "docs" / "telemetry.md").read_text()


@pytest.mark.parametrize("metric", semconv.METRICS, ids=lambda m: m.name)
def test_every_metric_is_documented_with_its_unit_and_prometheus_name(
    metric: semconv.MetricSpec,
) -> None:
    row = next((line for line in DOC.splitlines() if line.startswith(f"| `{metric.name}` |")), None)
    assert row is not None, f"{metric.name} missing from docs/telemetry.md"
    assert f"| `{metric.unit}` |" in row
    assert f"`{metric.prometheus_name}`" in row
    for key in metric.attributes:
        assert f"`{key}`" in row


def test_allow_list_is_documented() -> None:
    for key in semconv.METRIC_ATTRIBUTE_ALLOWLIST:
        assert f"`{key}`" in DOC, key


def test_error_kinds_are_documented() -> None:
    for kind in semconv.ERROR_KINDS:
        assert f"| `{kind}` |" in DOC, kind
