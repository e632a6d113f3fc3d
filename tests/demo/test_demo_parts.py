"""The demo's parts that need no servers: the scenario, the rule options, the engine it runs,
the view helpers, the command line."""

from __future__ import annotations

import pytest

from modelwatch import demo
from modelwatch.demo.alerts import MIN_WINDOW_S, demo_rule_options, not_evaluated, rule_file
from modelwatch.demo.engine import ANALYSES, FAILING_MODEL, SLOW_MODEL, Timing, example_engine
from modelwatch.demo.scenario import Scenario
from modelwatch.demo.view import _fit, _strip
from modelwatch.ops import rules
from modelwatch.ops.rules import AlertRule, build_alerts


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
    assert [s.at / duration for s in sc.steps] == pytest.approx([0.2, 0.3, 0.4, 0.6, 0.8])
    assert sc.phases[0].start == 0.0
    assert sc.phases[-1].end == duration
    assert all(a.end == b.start for a, b in zip(sc.phases, sc.phases[1:], strict=False))
    assert sc.phase_at(duration * 0.25).name.endswith("hangs")
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


def test_the_demo_runs_the_example_engine() -> None:
    """The analyses and their models are examples/engine.py's, not a copy of them."""
    table = example_engine().ANALYSES
    assert [a.name for a in ANALYSES] == list(table)
    for spec in ANALYSES:
        primary, backup = table[spec.name]
        assert (spec.primary.model, spec.backup.model) == (primary[0], backup[0])
    assert table["code_review"][0][0] == FAILING_MODEL


def test_rule_options_stand_one_run_for_an_hour_with_windows_rate_can_use() -> None:
    minute = demo_rule_options(60.0, latency_threshold_s=0.5, hung_s=1.0)
    assert (minute.latency_window_s, minute.latency_for_s) == (5, 5)  # 5m -> 5s
    assert minute.slo_fast_burn[0].long_s == 60  # 1h -> 1m
    assert (minute.latency_threshold_s, minute.hung_call_threshold_s) == (0.5, 1.0)
    short = demo_rule_options(10.0, latency_threshold_s=0.5, hung_s=1.0)
    assert short.latency_window_s == short.error_rate_window_s == MIN_WINDOW_S  # not 1 s
    assert all(w.short_s >= MIN_WINDOW_S for w in (*short.slo_fast_burn, *short.slo_slow_burn))
    assert short.latency_for_s == 1  # `for` is scaled, not floored


def test_a_new_rule_reaches_the_demo_without_demo_code(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = AlertRule(
        "ModelwatchSomethingNew", "modelwatch.telemetry", "vector(1)", 0, "info", "", ""
    )
    original = rules._telemetry_alerts
    monkeypatch.setattr(rules, "_telemetry_alerts", lambda q: [*original(q), extra])
    options = demo_rule_options(60.0, latency_threshold_s=0.5, hung_s=1.0)
    assert "alert: ModelwatchSomethingNew" in rule_file(options)  # what Prometheus loads
    names = [v.name for v in not_evaluated(options, "no Prometheus")]
    assert names == [r.name for r in build_alerts(options)]
    assert "ModelwatchSomethingNew" in names


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
    assert args.no_prometheus is False


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
