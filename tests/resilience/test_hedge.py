"""Hedged requests (issue 15; docs/router.md): a primary that hangs or answers late is raced by the
backup, through the real ``huggingface_hub`` and ``openai`` clients against FakeModelServer.

What is asserted is structure, not timing: the answer is the backup's, exactly one result is
returned, the loser's attempt span says ``cancelled``, the abandoned attempt's late answer
changes nothing, the hedge counter says who won, and the number of hedged attempts stays
within the retry tokens. The only clock comparison is "well before the attempt timeout",
which is what hedging is for (the attempt timeout is 20 s; the hedge delay 50 ms)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient

from modelwatch import semconv
from modelwatch._clock import ManualClock
from modelwatch.errors import ConfigurationError
from modelwatch.resilience import Backend, BreakerPolicy, Hedge, RetryPolicy, Router
from modelwatch.resilience.hedge import LatencyWindow
from modelwatch.testing import FakeModelServer

PRIMARY = "google/flan-t5-large"
BACKUP = "facebook/bart-large-cnn"
ATTEMPT_TIMEOUT_S = 20.0
HEDGE = Hedge(after_s=0.05)


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not met")
        time.sleep(0.01)


def ask(client: InferenceClient, prompt: str) -> str:
    return client.text_generation(prompt, max_new_tokens=4)


def hedge_count(telemetry: Any, outcome: str) -> float:
    return telemetry.counter(semconv.HEDGES.name, **{semconv.HEDGE_OUTCOME: outcome})


def attempt_spans(telemetry: Any, model: str) -> list[Any]:
    return [s for s in telemetry.spans() if s.name.endswith(model)]


@pytest.mark.parametrize("fault", ["hang", "slow"])
def test_a_hanging_or_late_primary_is_raced_and_the_backup_answers(
    fault: str, fake_server: FakeModelServer, telemetry: Any
) -> None:
    with (
        InferenceClient(model=fake_server.model_url(PRIMARY), timeout=60) as primary,
        InferenceClient(model=fake_server.model_url(BACKUP), timeout=60) as backup,
    ):
        router = Router(
            "hedged",
            [
                Backend(
                    lambda p: primary.text_generation(p, max_new_tokens=4),
                    model=PRIMARY,
                    provider="hf",
                ),
                Backend(
                    lambda p: backup.text_generation(p, max_new_tokens=4),
                    model=BACKUP,
                    provider="hf",
                ),
            ],
            attempt_timeout_s=ATTEMPT_TIMEOUT_S,
            hedge=HEDGE,
        )
        if fault == "hang":
            fake_server.fail(PRIMARY, "hang")
        else:  # the primary's p99: it does answer, late
            fake_server.set_latency(PRIMARY, 3.0)
        started = time.monotonic()
        answer = router.call("hello")
        elapsed = time.monotonic() - started
        assert answer == f"[{BACKUP}] hello"  # exactly one result: the backup's
        assert elapsed < ATTEMPT_TIMEOUT_S / 4  # bounded by hedge delay + backup, not the hang
        (lost,) = attempt_spans(telemetry, PRIMARY)
        (won,) = attempt_spans(telemetry, BACKUP)
        assert lost.attributes[semconv.ERROR_TYPE] == semconv.ERROR_CANCELLED
        assert won.attributes[semconv.MODELWATCH_ATTEMPT] == 2
        assert semconv.ERROR_TYPE not in won.attributes
        (route,) = telemetry.spans("route hedged")
        assert [e.name for e in route.events] == [semconv.EVENT_HEDGE]
        assert route.events[0].attributes[semconv.TO] == BACKUP
        assert hedge_count(telemetry, semconv.HEDGE_WON) == 1
        # the abandoned attempt answers late (or is released): its result is dropped
        fake_server.heal(PRIMARY)
        wait_for(lambda: router._members[0].pool.threads == 0 or _idle(router))
        assert len(telemetry.spans()) == 3  # route + two attempts, nothing more
        assert router.breaker(PRIMARY).state == "closed"  # no verdict from a lost race
        assert router.status()[0].latency_s is None  # its late success was not recorded
        assert fake_server.request_count(PRIMARY) == 1
        assert fake_server.request_count(BACKUP) == 1
        router.close()


def _idle(router: Router) -> bool:
    pool = router._members[0].pool
    return pool is not None and pool._idle == pool.threads


def test_a_fast_primary_is_not_hedged(fake_server: FakeModelServer, telemetry: Any) -> None:
    with InferenceClient(model=fake_server.model_url(PRIMARY), timeout=10) as primary:
        router = Router(
            "unhedged",
            [
                Backend(
                    lambda p: primary.text_generation(p, max_new_tokens=4),
                    model=PRIMARY,
                    provider="hf",
                ),
                Backend(lambda p: "backup", model=BACKUP, provider="hf"),
            ],
            hedge=Hedge(after_s=5.0),
        )
        assert router.call("hi") == f"[{PRIMARY}] hi"
        assert fake_server.request_count(PRIMARY) == 1
        assert attempt_spans(telemetry, BACKUP) == []
        assert telemetry.points(semconv.HEDGES.name) == []
        router.close()


async def test_async_openai_loser_is_cancelled_and_leaks_nothing(
    fake_server: FakeModelServer, telemetry: Any
) -> None:
    async with openai.AsyncOpenAI(
        base_url=fake_server.openai_base_url,
        api_key="sk-test",
        max_retries=0,
        timeout=httpx.Timeout(60.0),
    ) as client:
        cancelled: list[str] = []

        def ask(model: str) -> Any:
            async def call(prompt: str) -> str:
                try:
                    answer = await client.chat.completions.create(
                        model=model, messages=[{"role": "user", "content": prompt}]
                    )
                except asyncio.CancelledError:
                    cancelled.append(model)
                    raise
                return answer.choices[0].message.content or ""

            return call

        router = Router(
            "ahedged",
            [
                Backend(ask("gpt-4o"), model="gpt-4o", provider="openai"),
                Backend(ask("gpt-4o-mini"), model="gpt-4o-mini", provider="openai"),
            ],
            attempt_timeout_s=ATTEMPT_TIMEOUT_S,
            hedge=HEDGE,
        )
        fake_server.fail("gpt-4o", "hang")
        started = time.monotonic()
        answer = await router.acall("hello")
        assert time.monotonic() - started < ATTEMPT_TIMEOUT_S / 4
        assert answer.startswith("[gpt-4o-mini]")
        assert cancelled == ["gpt-4o"]  # the loser's coroutine itself was cancelled
        (lost,) = attempt_spans(telemetry, "gpt-4o")
        assert lost.attributes[semconv.ERROR_TYPE] == semconv.ERROR_CANCELLED
        assert hedge_count(telemetry, semconv.HEDGE_WON) == 1
        fake_server.heal("gpt-4o")
        await asyncio.sleep(0)
        assert len(telemetry.spans()) == 3
        assert router.breaker("gpt-4o").state == "closed"


async def test_a_primary_that_wins_the_race_cancels_the_hedge(telemetry: Any) -> None:
    release = asyncio.Event()
    backup_cancelled = asyncio.Event()

    async def primary(_: str) -> str:
        await release.wait()
        return "primary"

    async def backup(_: str) -> str:
        release.set()  # the primary answers while the hedge is running
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            backup_cancelled.set()
            raise
        return "never"

    router = Router(
        "race",
        [Backend(primary, model="p", provider="t"), Backend(backup, model="b", provider="t")],
        hedge=Hedge(after_s=0.01),
    )
    assert await router.acall("x") == "primary"
    assert backup_cancelled.is_set()
    assert hedge_count(telemetry, semconv.HEDGE_CANCELLED) == 1
    assert hedge_count(telemetry, semconv.HEDGE_WON) == 0


async def test_hedges_add_load_only_within_the_retry_tokens(telemetry: Any) -> None:
    """Every call finds the primary slow; hedges take a token each, so of N calls at most
    10 (the reserve) + 0.2 N are hedged; the others wait for the primary's attempt timeout and
    fail over as usual. Attempts are counted, not timed."""
    calls = {"p": 0, "b": 0}

    async def slow(_: str) -> str:
        calls["p"] += 1
        await asyncio.sleep(3600)
        return "never"

    async def backup(_: str) -> str:
        calls["b"] += 1
        return "b"

    n = 40
    router = Router(
        "tokens",
        [Backend(slow, model="slow", provider="t"), Backend(backup, model="b", provider="t")],
        attempt_timeout_s=0.05,
        hedge=Hedge(after_s=0.01),
        retry=RetryPolicy(budget_ratio=0.2, budget_min_per_s=0.0),
        breaker=BreakerPolicy(consecutive_failures=10_000, min_calls=10_000),
        clock=ManualClock(),  # no tokens accrue with time
    )
    for _ in range(n):
        assert await router.acall("x") == "b"
    hedged = hedge_count(telemetry, semconv.HEDGE_WON)
    assert hedged <= 10 + 0.2 * n
    assert hedged >= 10  # the reserve was used
    assert calls == {"p": n, "b": n}  # one primary attempt per call, one backup: no more
    failovers = telemetry.counter(semconv.FAILOVERS.name)
    assert failovers == n - hedged  # the rest failed over at the primary's timeout


def test_the_learned_delay_is_the_recent_p95_within_floor_and_cap() -> None:
    hedge = Hedge(min_after_s=0.1, max_after_s=2.0, window=100, min_samples=20)
    window = LatencyWindow(hedge.window)
    assert hedge.delay_s(window) == 2.0  # nothing learned yet: the cap
    for i in range(100):
        window.add(0.01 * (i + 1))  # 0.01 .. 1.00 s
    assert hedge.delay_s(window) == pytest.approx(0.95, abs=0.03)  # recomputed every 12 answers
    for _ in range(200):  # the old answers have left the window
        window.add(0.001)
    assert hedge.delay_s(window) == 0.1  # the floor
    assert Hedge(after_s=0.3).delay_s(window) == 0.3


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"after_s": 0}, "after_s"),
        ({"after_s": float("nan")}, "after_s"),
        ({"max_hedges": 0}, "max_hedges"),
        ({"min_after_s": 2.0, "max_after_s": 1.0}, "max_after_s"),
        ({"window": 10, "min_samples": 20}, "min_samples"),
    ],
    ids=str,
)
def test_bad_hedge_settings_fail_at_construction(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(ConfigurationError, match=argument):
        Hedge(**kwargs)
