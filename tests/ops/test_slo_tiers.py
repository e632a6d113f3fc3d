"""SLO tiers: ``monitored(tier=...)`` and ``Router(tier=...)`` label the calls' metrics (and
the failovers) with one of the declared tiers; anything else is refused at construction; the
burn-rate rules compare each tier with its own target (``RuleOptions.slo_tiers``, the CLI's
``--slo-tier``). promtool cases: tests/ops/data/slo-tiers.test.yml."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

import modelwatch
from modelwatch import semconv
from modelwatch.errors import ConfigurationError
from modelwatch.ops.alertmanager import inhibit_rules
from modelwatch.ops.rules import RuleOptions, build_alerts
from modelwatch.ops.rules_cli import main
from modelwatch.testing import capture

DURATION = semconv.OPERATION_DURATION.name


def test_the_declared_tiers() -> None:
    assert semconv.SLO_TIERS == ("critical", "standard", "batch")
    assert semconv.MODELWATCH_TIER in semconv.METRIC_ATTRIBUTE_ALLOWLIST
    assert semconv.MODELWATCH_TIER in semconv.OPERATION_DURATION.attributes
    assert semconv.MODELWATCH_TIER in semconv.FAILOVERS.attributes


def test_monitored_puts_the_tier_on_the_span_and_the_metrics() -> None:
    @modelwatch.monitored(model="flan", provider="hf", tier="batch")
    def summarise(text: str) -> str:
        return text[:3]

    with capture() as cap:
        assert summarise("abcdef") == "abc"
        with modelwatch.monitored(model="flan", provider="hf"):
            pass
    tiers = [s.attributes.get(semconv.MODELWATCH_TIER) for s in cap.find_spans("chat flan")]
    assert sorted(tiers, key=str) == [None, "batch"]  # "None" < "batch"
    assert cap.metric_count(DURATION, {semconv.MODELWATCH_TIER: "batch"}) == 1
    untiered = [
        p for p in cap.metric_points(DURATION) if semconv.MODELWATCH_TIER not in p.attributes
    ]
    assert sum(p.count or 0 for p in untiered) == 1  # no tier: no label at all


@pytest.mark.parametrize("tier", ["gold", "", "Critical", 1])
def test_an_undeclared_tier_is_refused_naming_the_argument(tier: Any) -> None:
    with pytest.raises(ConfigurationError, match="tier must be one of critical, standard"):
        modelwatch.monitored(model="m", provider="p", tier=tier)
    with pytest.raises(ConfigurationError, match=r"Router\('tiered'\): tier must be one of"):
        modelwatch.Router(
            "tiered", [modelwatch.Backend(lambda: "x", model="m", provider="p")], tier=tier
        )


def test_a_router_tier_labels_every_attempt_and_failover() -> None:
    def broken() -> str:
        raise ConnectionError("refused")

    router = modelwatch.Router(
        "tiered-router",
        [
            modelwatch.Backend(broken, model="primary", provider="p"),
            modelwatch.Backend(lambda: "ok", model="backup", provider="p"),
        ],
        tier="critical",
        isolate_sync=False,
    )
    try:
        with capture() as cap:
            assert router.call() == "ok"
    finally:
        router.close()
    tiers = {
        (p.attributes[semconv.GEN_AI_REQUEST_MODEL], p.attributes.get(semconv.MODELWATCH_TIER))
        for p in cap.metric_points(DURATION)
    }
    assert tiers == {("primary", "critical"), ("backup", "critical")}
    (failover,) = cap.metric_points(semconv.FAILOVERS.name)
    assert failover.attributes[semconv.MODELWATCH_TIER] == "critical"
    assert failover.attributes[semconv.FROM] == "primary"


def test_each_tier_burns_against_its_own_target() -> None:
    options = RuleOptions(slo_tiers={"critical": 0.9995, "batch": 0.9})
    (fast,) = [a for a in build_alerts(options) if a.name == "ModelwatchErrorBudgetBurnFast"]
    assert "> on (modelwatch_tier) group_left ()" in fast.expr
    assert 'label_replace(vector(0.0072), "modelwatch_tier", "critical", "", "")' in fast.expr
    assert 'label_replace(vector(1.44), "modelwatch_tier", "batch", "", "")' in fast.expr
    assert '"standard"' not in fast.expr  # left out: measured against slo_target
    assert "vector(0.0144)" in fast.expr  # calls without a tier (and standard): 99.9 %
    assert "sum by (job, gen_ai_request_model, modelwatch_tier)" in fast.expr
    # without tiers, the plain comparison of before
    (plain,) = [
        a
        for a in build_alerts(RuleOptions(slo_tiers={}))
        if a.name == "ModelwatchErrorBudgetBurnFast"
    ]
    assert "group_left" not in plain.expr
    assert ") > 0.0144\nand" in plain.expr


def test_the_fast_burn_holds_back_the_slow_one_of_the_same_tier_only() -> None:
    (rule,) = [
        r
        for r in inhibit_rules()
        if r["target_matchers"] == ['alertname="ModelwatchErrorBudgetBurnSlow"']
    ]
    assert rule["equal"] == ["job", "gen_ai_request_model", "modelwatch_tier"]


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ({"gold": 0.99}, "'gold' is not a tier"),
        ({"critical": 1.0}, r"slo_tiers\['critical'\] must be between 0 and 1"),
        ({"batch": "0.9"}, r"slo_tiers\['batch'\] must be a number"),
    ],
)
def test_bad_tier_targets_are_refused(tiers: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RuleOptions(slo_tiers=tiers)


def test_the_cli_sets_tier_targets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--slo-tier", "batch=0.8", "--slo-tier", "critical=0.9999"]) == 0
    document = yaml.safe_load(capsys.readouterr().out)
    (slo,) = [g for g in document["groups"] if g["name"] == "modelwatch.slo"]
    fast = slo["rules"][0]["expr"]
    assert 'vector(2.88), "modelwatch_tier", "batch"' in fast  # 14.4 x 0.2
    assert 'vector(0.00144), "modelwatch_tier", "critical"' in fast
    assert 'vector(0.144), "modelwatch_tier", "standard"' in fast  # the default kept
    assert main(["--slo-tier", "gold=0.9"]) == 2
    assert "'gold' is not a tier" in capsys.readouterr().err
    assert main(["--slo-tier", "batch"]) == 2
