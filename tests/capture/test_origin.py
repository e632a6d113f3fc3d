"""Calls made by health checks and breaker probes carry modelwatch.origin="probe"; users'
calls carry nothing, so availability SLOs can count users' calls only."""

from __future__ import annotations

import modelwatch
from modelwatch import BreakerPolicy
from modelwatch.capture.origin import in_probe, probing
from modelwatch.resilience._probe import run_probe
from modelwatch.resilience.breaker import Breaker
from modelwatch.testing import Captured

DURATION = "gen_ai.client.operation.duration"
ORIGIN = "modelwatch.origin"


def _model_call() -> str:
    with modelwatch.monitored(model="m", provider="p") as call:
        call.record_usage(3, 4)
    return "ok"


def test_calls_inside_probing_are_marked_and_users_calls_are_not(
    modelwatch_capture: Captured,
) -> None:
    _model_call()
    with probing():
        assert in_probe()
        _model_call()
    assert not in_probe()
    spans = modelwatch_capture.find_spans("chat m")
    assert sorted(str((s.attributes or {}).get(ORIGIN)) for s in spans) == ["None", "probe"]
    assert modelwatch_capture.metric_count(DURATION, {ORIGIN: "probe"}) == 1
    points = modelwatch_capture.metric_points(DURATION)
    assert sorted(str(p.attributes.get(ORIGIN)) for p in points) == ["None", "probe"]
    assert modelwatch_capture.metric_sum("gen_ai.client.token.usage", {ORIGIN: "probe"}) == 7


def test_health_probes_are_probes(modelwatch_capture: Captured) -> None:
    health = modelwatch.Health(jitter=0.0)
    health.add("m", probe=_model_call, kind="model")
    try:
        assert health.run_once().check("m").status == "ok"  # type: ignore[union-attr]
    finally:
        health.stop()
    assert modelwatch_capture.metric_count(DURATION, {ORIGIN: "probe"}) == 1


async def test_async_health_probes_are_probes(modelwatch_capture: Captured) -> None:
    async def probe() -> bool:
        async with modelwatch.monitored(model="m", provider="p"):
            return True

    health = modelwatch.Health(jitter=0.0)
    health.add("am", probe=probe, kind="model")
    try:
        assert health.run_once().check("am").status == "ok"  # type: ignore[union-attr]
    finally:
        health.stop()
    assert modelwatch_capture.metric_count(DURATION, {ORIGIN: "probe"}) == 1


def test_breaker_recovery_probes_are_probes(modelwatch_capture: Captured) -> None:
    breaker = Breaker("origin-test", BreakerPolicy(probe_interval_s=3600))
    breaker.force_open()
    breaker.set_probe(_model_call)
    assert run_probe(breaker) in (True, None)  # None: the prober thread got there first
    modelwatch_capture.metric_points(DURATION)  # collect
    assert modelwatch_capture.metric_count(DURATION, {ORIGIN: "probe"}) >= 1
    assert modelwatch_capture.metric_count(DURATION) == modelwatch_capture.metric_count(
        DURATION, {ORIGIN: "probe"}
    )
    breaker.set_probe(None)
