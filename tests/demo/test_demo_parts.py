"""The demo's parts that need no servers: the scenario, the alert evaluation, the view helpers,
the command line."""

from __future__ import annotations

import pytest

from modelwatch.ops import demo
from modelwatch.ops._demo_alerts import demo_rule_options, evaluate
from modelwatch.ops._demo_engine import FAILING_MODEL, SLOW_MODEL, Timing
from modelwatch.ops._demo_record import AttemptRecord, Recorder, RequestRecord, StateSample
from modelwatch.ops._demo_scenario import Scenario
from modelwatch.ops._demo_view import _fit, _strip
from modelwatch.ops.rules import build_alerts


def scenario(duration: float, seed: int) -> Scenario:
    return Scenario(duration, seed, failing=FAILING_MODEL, slow=SLOW_MODEL, slow_latency_s=0.5)


def test_the_same_seed_scripts_the_same_incident() -> None:
    assert scenario(60, 7).faults == scenario(60, 7).faults
    assert [s.text for s in scenario(60, 7).steps] == [s.text for s in scenario(60, 7).steps]
    plans = {tuple(scenario(60, seed).faults) for seed in range(20)}
    assert len(plans) > 1  # the seed does choose the mix
    for plan in plans:
        assert plan[0].fault == "rate_limit"  # 429 with Retry-After first
        assert any(step.fault == "hang" for step in plan)
        assert plan[-1].fault == "loading"
        assert plan[-1].times is None  # ...and down until it heals


@pytest.mark.parametrize("duration", [10.0, 60.0, 300.0])
def test_phases_are_proportional_to_the_duration(duration: float) -> None:
    sc = scenario(duration, 1)
    assert [s.at / duration for s in sc.steps] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert sc.phases[0].start == 0.0
    assert sc.phases[-1].end == duration
    assert all(a.end == b.start for a, b in zip(sc.phases, sc.phases[1:], strict=False))
    assert sc.phase_at(duration * 0.5).name.startswith("incident")
    assert sc.phase_at(duration * 2).name == "calm"


def test_demo_timing_stays_within_its_timeouts() -> None:
    for duration in (5.0, 10.0, 60.0, 600.0):
        t = Timing(duration)
        # the slow model is slow, but not so slow that its calls time out
        assert t.latency_alert_s < t.slow_latency_s < t.attempt_timeout_s
        assert t.attempt_timeout_s < t.client_timeout_s < t.call_timeout_s
        t.breaker_policy()  # valid
        assert "production default" in t.describe()


def _records() -> Recorder:
    """Two seconds of a model failing with its breaker open, then healthy again."""
    rec = Recorder()
    for i in range(40):
        t = i * 0.1
        failing = 1.0 <= t < 3.0
        rec.attempt(
            rec.attempt_started("m"),
            AttemptRecord(t, t + 0.05, "a", "m", "user", "unavailable" if failing else None),
        )
        served = "backup" if failing else "m"
        rec.request(RequestRecord(t, t + 0.06, "a", served, None, "m"))
        rec.sample(
            StateSample(
                at=t,
                states={("a", "m"): "open" if failing else "closed", ("a", "backup"): "closed"},
                health={"m": "down" if failing else "ok"},
            )
        )
    return rec


def test_alerts_fire_on_what_was_recorded_and_name_every_generated_rule() -> None:
    options = demo_rule_options(4.0, latency_threshold_s=1.0, hung_s=1.0)
    verdicts = {v.name: v for v in evaluate(_records(), options, 4.0)}
    assert set(verdicts) == {rule.name for rule in build_alerts(options)}
    for name in (
        "ModelwatchCircuitOpen",
        "ModelwatchFailovers",
        "ModelwatchHealthCheckDown",
        "ModelwatchErrorRateHigh",
    ):
        assert verdicts[name].outcome == "fired", verdicts[name]
    circuit = verdicts["ModelwatchCircuitOpen"].fired[0]
    assert circuit[0] == "m in a"
    assert 1.0 <= circuit[1] < 1.5
    for name in ("ModelwatchHighLatency", "ModelwatchAllCircuitsOpen", "ModelwatchNotReady"):
        assert verdicts[name].outcome == "quiet", verdicts[name]
    assert verdicts["ModelwatchBudgetExhausted"].outcome == "not evaluated"


def _burn_fast(origin: str, model: str, primary: str) -> str:
    rec = Recorder()
    for i in range(40):
        t = i * 0.1
        error = "unavailable" if 1.0 <= t < 3.0 else None
        rec.attempt(
            rec.attempt_started(model), AttemptRecord(t, t + 0.05, "a", model, origin, error)
        )  # type: ignore[arg-type]
        rec.request(
            RequestRecord(t, t + 0.06, "a", model if error is None else None, error, primary)
        )
        rec.sample(StateSample(at=t, states={("a", model): "closed"}, health={model: "ok"}))
    options = demo_rule_options(4.0, latency_threshold_s=1.0, hung_s=1.0)
    verdicts = {v.name: v for v in evaluate(rec, options, 4.0)}
    return verdicts["ModelwatchErrorBudgetBurnFast"].outcome


def test_error_budget_burns_only_on_users_failures_no_failover_rescued() -> None:
    options = demo_rule_options(4.0, latency_threshold_s=1.0, hung_s=1.0)
    # the primary "m" fails, the backup answers: rescued, the budget does not burn
    rescued = {v.name: v for v in evaluate(_records(), options, 4.0)}
    assert rescued["ModelwatchErrorBudgetBurnFast"].outcome == "quiet"
    # a backup failing for users (nothing after it) burns it...
    assert _burn_fast("user", "backup", primary="m") == "fired"
    # ...but the same failures of health checks do not: they are not users' calls
    assert _burn_fast("health", "backup", primary="m") == "quiet"


def test_quiet_run_fires_nothing() -> None:
    rec = Recorder()
    for i in range(40):
        t = i * 0.1
        rec.attempt(rec.attempt_started("m"), AttemptRecord(t, t + 0.05, "a", "m", "user", None))
        rec.sample(StateSample(at=t, states={("a", "m"): "closed"}, health={"m": "ok"}))
    options = demo_rule_options(4.0, latency_threshold_s=1.0, hung_s=1.0)
    assert not [v.name for v in evaluate(rec, options, 4.0) if v.outcome == "fired"]


def test_live_lines_are_cut_to_the_terminal_width_keeping_colours() -> None:
    line = "\x1b[31m" + "x" * 50 + "\x1b[0m" + "y" * 50
    cut = _fit(line, 30)
    assert len(_strip(cut)) == 30
    assert cut.startswith("\x1b[31m")
    assert cut.endswith("\x1b[0m")
    assert _fit("short", 30) == "short"


def test_command_line() -> None:
    assert demo.main(["--help"]) == 0
    assert demo.main(["--duration", "1"]) == 2
    assert demo.main(["--port-base", "80"]) == 2
    args = demo.parse_args([])
    assert (args.duration, args.seed, args.port_base, args.no_live) == (60.0, 7, 0, False)


def test_missing_optional_clients_are_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec

    def without_openai(name: str, package: str | None = None) -> object:
        return None if name == "openai" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_openai)
    assert demo.main(["--duration", "5"]) == 2
    assert "pip install 'modelwatch[openai]'" in capsys.readouterr().err
