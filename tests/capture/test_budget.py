"""Budgets: priced calls count against matching budgets; periods roll; usage is observed."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest
from structlog.testing import capture_logs

import modelwatch
from modelwatch.capture.budget import spent_budgets
from modelwatch.testing import Captured

FLAN = "google/flan-t5-large"  # shipped price: 0.0006 USD per request


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _call(model: str = FLAN, analysis: str | None = None) -> None:
    with modelwatch.monitored(model=model, provider="huggingface", analysis=analysis) as call:
        call.record_usage(1, 1)


def test_calls_are_charged_to_matching_budgets_and_observed(modelwatch_capture: Captured) -> None:
    with (
        modelwatch.Budget("all", limit_usd=0.006) as everything,
        modelwatch.Budget("review", limit_usd=0.01, analysis="code_review") as review,
        modelwatch.Budget("bart", limit_usd=1.0, model="facebook/bart-large-cnn") as bart,
    ):
        _call(analysis="code_review")
        _call(analysis="code_review")
        _call(analysis="tech_recommendation")
        assert everything.spent_usd == pytest.approx(0.0018)
        assert everything.used == pytest.approx(0.3)
        assert review.spent_usd == pytest.approx(0.0012)
        assert bart.spent_usd == 0.0
        points = {
            p.attributes["modelwatch.budget"]: p.value
            for p in modelwatch_capture.metric_points("modelwatch.budget.used")
        }
        assert points == pytest.approx({"all": 0.3, "review": 0.12, "bart": 0.0})
    _call()
    assert everything.spent_usd == pytest.approx(0.0018)  # closed: no longer counting


def test_exceeding_logs_once_per_period_and_the_period_rolls() -> None:
    clock = Clock(datetime(2026, 11, 23, 23, 59, tzinfo=timezone.utc).timestamp())
    with modelwatch.Budget("tiny", limit_usd=0.001, period="day", clock=clock) as tiny:
        with capture_logs() as logs:
            for _ in range(3):
                _call()
        exceeded = [e for e in logs if e["event"] == "modelwatch.budget.exceeded"]
        assert len(exceeded) == 1
        assert exceeded[0]["budget"] == "tiny"
        assert tiny.used == pytest.approx(1.8)
        clock.now += 120  # past midnight UTC: a new day
        assert tiny.spent_usd == 0.0


def test_weeks_start_on_monday_utc() -> None:
    sunday_night = datetime(2026, 11, 29, 23, 0, tzinfo=timezone.utc).timestamp()
    clock = Clock(sunday_night)
    with modelwatch.Budget("weekly", limit_usd=1.0, period="week", clock=clock) as b:
        b.add(0.25)
        clock.now += 3600  # Monday 00:00: a new ISO week
        assert b.spent_usd == 0.0


def test_fixed_second_periods() -> None:
    clock = Clock(1000.0)
    with modelwatch.Budget("minute", limit_usd=1.0, period=60, clock=clock) as b:
        b.add(0.5)
        clock.now = 1019.0
        assert b.spent_usd == 0.5
        clock.now = 1020.0  # 1020 is a multiple of 60: a new window
        assert b.spent_usd == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "", "limit_usd": 1.0}, "name"),
        ({"name": "x", "limit_usd": 0}, "limit_usd"),
        ({"name": "x", "limit_usd": 1.0, "period": "fortnight"}, "period"),
        ({"name": "x", "limit_usd": 1.0, "period": -5}, "period"),
        ({"name": "x", "limit_usd": math.inf}, "limit_usd"),
        ({"name": "x", "limit_usd": math.nan}, "limit_usd"),
        ({"name": "x", "limit_usd": "5"}, "limit_usd"),
        ({"name": "x", "limit_usd": 1.0, "period": math.inf}, "period"),
        ({"name": "x", "limit_usd": 1.0, "enforce": "block"}, "enforce"),
        ({"name": "x", "limit_usd": 1.0, "store": "redis://x"}, "store"),
        ({"name": "x", "limit_usd": 1.0, "sync_interval_s": math.nan}, "sync_interval_s"),
        ({"name": "x", "limit_usd": 1.0, "model": 5}, "model"),
    ],
)
def test_bad_budgets_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(modelwatch.ConfigurationError, match=message):
        modelwatch.Budget(**kwargs)  # type: ignore[arg-type]


def test_duplicate_names_are_rejected() -> None:
    with modelwatch.Budget("dup", limit_usd=1.0), pytest.raises(ValueError, match="already open"):
        modelwatch.Budget("dup", limit_usd=2.0)


def test_forked_child_starts_without_the_parents_calls_cost_or_spend() -> None:
    import os

    from modelwatch.capture import _telemetry, call

    with modelwatch.Budget("fork", limit_usd=1.0) as budget:
        _call()
        with modelwatch.monitored(model="m", provider="p"):
            assert call._inflight  # a running call in the parent
            pid = os.fork()
            if pid == 0:  # the child: no running calls, no cost, no spend of the parent's
                tel = _telemetry._current
                clean = not call._inflight and budget.spent_usd == 0.0
                clean = clean and (tel is None or not tel._cost_totals)
                os._exit(0 if clean else 1)
            _, status = os.waitpid(pid, 0)
        assert budget.spent_usd > 0  # the parent keeps its own
    assert os.waitstatus_to_exitcode(status) == 0


def test_budget_exceeded_error_names_the_budget_spend_and_period_end() -> None:
    end = datetime(2026, 12, 3, tzinfo=timezone.utc).timestamp()
    exc = modelwatch.BudgetExceededError("daily", 50.25, 50.0, end)
    assert isinstance(exc, modelwatch.ModelwatchError)
    assert (exc.budget, exc.spent_usd, exc.limit_usd, exc.period_end) == ("daily", 50.25, 50.0, end)
    assert "'daily'" in str(exc)
    assert "2026-12-03T00:00:00Z" in str(exc)


def test_spent_enforcing_budgets_are_found_for_the_calls_they_cover() -> None:
    clock = Clock(datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc).timestamp())
    with (
        modelwatch.Budget("watch", limit_usd=0.001, clock=clock) as watching,
        modelwatch.Budget("big", limit_usd=0.001, model="big", enforce="skip", clock=clock) as big,
        modelwatch.Budget(
            "review", limit_usd=0.01, analysis="code_review", enforce="refuse", clock=clock
        ) as review,
    ):
        assert spent_budgets(model="big", analysis="code_review") == ()
        big.add(0.002, {"gen_ai.request.model": "big"})
        watching.add(0.002)  # spent, but it only watches
        assert spent_budgets(model="big") == (big,)
        assert spent_budgets(model="small") == ()
        review.add(0.01, {"modelwatch.analysis": "code_review"})
        assert spent_budgets(model="small", analysis="code_review") == (review,)
        error = review.error()
        assert isinstance(error, modelwatch.BudgetExceededError)
        assert error.spent_usd == pytest.approx(0.01)
        assert error.period_end == datetime(2026, 12, 3, tzinfo=timezone.utc).timestamp()
        clock.now += 12 * 3600  # a new day: nothing is spent
        assert spent_budgets(model="big", analysis="code_review") == ()


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("hour", datetime(2026, 12, 2, 12, 30), datetime(2026, 12, 2, 13, 0)),
        ("week", datetime(2026, 12, 2, 12, 30), datetime(2026, 12, 7)),
        ("month", datetime(2026, 12, 2, 12, 30), datetime(2027, 1, 1)),
        ("month", datetime(2026, 2, 10), datetime(2026, 3, 1)),
    ],
)
def test_period_end(period: str, start: datetime, end: datetime) -> None:
    clock = Clock(start.replace(tzinfo=timezone.utc).timestamp())
    with modelwatch.Budget("ends", limit_usd=1.0, period=period, clock=clock) as b:  # type: ignore[arg-type]
        assert b.period_end == end.replace(tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("cost", [math.nan, math.inf, -1.0])
def test_a_cost_that_is_not_one_is_not_counted(cost: float) -> None:
    with modelwatch.Budget("sane", limit_usd=1.0) as b:
        b.add(0.25)
        b.add(cost)
        assert b.spent_usd == 0.25
