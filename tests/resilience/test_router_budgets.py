"""Budget-aware routing (issue 15): a spent ``Budget(enforce="skip")`` makes the router pass
its backend over (to a cheaper model), ``enforce="refuse"`` refuses the call with
``BudgetExceededError``; through the real ``openai`` client against FakeModelServer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from modelwatch import semconv
from modelwatch.capture.budget import Budget
from modelwatch.errors import BudgetExceededError
from modelwatch.resilience import Backend, Router
from modelwatch.testing import FakeModelServer

EXPENSIVE = "gpt-4o"
CHEAP = "gpt-4o-mini"


@pytest.fixture
def oai(fake_server: FakeModelServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=fake_server.openai_base_url,
        api_key="sk-test",
        max_retries=0,
        timeout=httpx.Timeout(5.0),
    ) as client:
        yield client


def router_of(client: openai.OpenAI, models: tuple[str, ...] = (EXPENSIVE, CHEAP)) -> Router:
    def ask(model: str) -> Any:
        def call(prompt: str) -> str:
            answer = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}]
            )
            return answer.choices[0].message.content or ""

        return call

    return Router(
        "budgeted",
        [Backend(ask(m), model=m, provider="openai") for m in models],
        isolate_sync=False,
    )


@pytest.fixture
def budget_of() -> Iterator[Any]:
    made: list[Budget] = []

    def make(enforce: str, model: str = EXPENSIVE) -> Budget:
        budget = Budget(f"b-{enforce}-{model}", limit_usd=1.0, model=model, enforce=enforce)  # type: ignore[arg-type]
        made.append(budget)
        return budget

    yield make
    for budget in made:
        budget.close()


def test_a_spent_skip_budget_sends_calls_to_the_cheaper_model(
    fake_server: FakeModelServer, oai: openai.OpenAI, budget_of: Any, telemetry: Any
) -> None:
    router = router_of(oai)
    budget = budget_of("skip")
    assert router.call("hello").startswith(f"[{EXPENSIVE}]")  # not spent yet
    budget.add(1.5, {semconv.GEN_AI_REQUEST_MODEL: EXPENSIVE})
    assert router.call("hello").startswith(f"[{CHEAP}]")
    assert fake_server.request_count(EXPENSIVE) == 1  # the spent backend was not called
    assert (
        telemetry.counter(semconv.FAILOVERS.name, **{semconv.REASON: "budget", semconv.TO: CHEAP})
        == 1
    )
    assert router.breaker(EXPENSIVE).state == "closed"  # a budget is no fault of the backend


def test_a_spent_refuse_budget_refuses_the_call(
    fake_server: FakeModelServer, oai: openai.OpenAI, budget_of: Any
) -> None:
    router = router_of(oai)
    budget = budget_of("refuse")
    budget.add(2.0, {semconv.GEN_AI_REQUEST_MODEL: EXPENSIVE})
    with pytest.raises(BudgetExceededError) as info:
        router.call("hello")
    assert info.value.budget == budget.name
    assert fake_server.request_count() == 0


def test_every_backend_skipped_for_its_budget_raises_budget_exceeded(
    fake_server: FakeModelServer, oai: openai.OpenAI, budget_of: Any
) -> None:
    router = router_of(oai, (EXPENSIVE,))
    budget_of("skip").add(1.0, {semconv.GEN_AI_REQUEST_MODEL: EXPENSIVE})
    with pytest.raises(BudgetExceededError):
        router.call("hello")
    assert fake_server.request_count() == 0
