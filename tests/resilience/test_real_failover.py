"""Failover and recovery through the real ``huggingface_hub`` and ``openai`` clients (their
own retries off) against FakeModelServer, one fault at a time: refused connection, reset,
500, 503 loading, 429 with Retry-After, hang, slow first chunk, stream cut after content.

Each test checks what the caller gets (the backup's real answer, or the typed error), what
the primary's attempt span says (``error.type``), and the failover metric's reason."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from huggingface_hub import AsyncInferenceClient, InferenceClient

from modelwatch import semconv
from modelwatch.errors import AllBackendsFailedError, StreamInterruptedError
from modelwatch.resilience.backend import Backend
from modelwatch.resilience.policy import BreakerPolicy, RetryPolicy
from modelwatch.resilience.router import Router
from modelwatch.testing import FakeModelServer

PRIMARY = "google/flan-t5-large"
BACKUP = "facebook/bart-large-cnn"
GPT = "gpt-4o-mini"
GPT_BACKUP = "gpt-4o"
CLIENT_TIMEOUT_S = 5.0  # longer than the router's: proves modelwatch's own timeout acted
# modelwatch's attempt timeout here: short enough for fast hang tests, long enough that a
# loaded CI machine does not turn a reset or a 500 into a timeout
ATTEMPT_TIMEOUT_S = 1.0


@pytest.fixture
def closed_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting is refused at once."""
    from support.servers import free_port

    return f"http://127.0.0.1:{free_port()}/models/{PRIMARY}"


def hf_router(
    server: FakeModelServer, primary_url: str | None = None, **kw: Any
) -> tuple[Router, InferenceClient, InferenceClient]:
    primary = InferenceClient(
        model=primary_url or server.model_url(PRIMARY), timeout=CLIENT_TIMEOUT_S
    )
    backup = InferenceClient(model=server.model_url(BACKUP), timeout=CLIENT_TIMEOUT_S)
    kw.setdefault("attempt_timeout_s", ATTEMPT_TIMEOUT_S)
    router = Router(
        "hf",
        [
            Backend(
                lambda prompt: primary.text_generation(prompt, max_new_tokens=4),
                model=PRIMARY,
                provider="huggingface",
                operation="text_generation",
                server_address=server.url,
            ),
            Backend(
                lambda prompt: backup.text_generation(prompt, max_new_tokens=4),
                model=BACKUP,
                provider="huggingface",
                operation="text_generation",
            ),
        ],
        **kw,
    )
    return router, primary, backup


HF_FAULTS = [
    ("reset", {}, semconv.ERROR_UNAVAILABLE),
    ("server_error", {}, semconv.ERROR_UNAVAILABLE),
    ("loading", {"estimated_time": 20.0}, semconv.ERROR_UNAVAILABLE),
    ("rate_limit", {"retry_after": 7}, semconv.ERROR_RATE_LIMITED),
    ("hang", {}, semconv.ERROR_TIMEOUT),
]


def assert_failed_over(telemetry: Any, kind: str, model: str = PRIMARY) -> None:
    (primary_span,) = [s for s in telemetry.spans() if s.name.endswith(model)]
    assert primary_span.attributes[semconv.ERROR_TYPE] == kind
    assert primary_span.attributes[semconv.MODELWATCH_ATTEMPT] == 1
    assert telemetry.counter(semconv.FAILOVERS.name, **{semconv.REASON: kind}) == 1


@pytest.mark.parametrize(("fault", "params", "kind"), HF_FAULTS, ids=[f[0] for f in HF_FAULTS])
def test_huggingface_primary_fault_fails_over_to_backup(
    fault: str, params: dict[str, Any], kind: str, fake_server: FakeModelServer, telemetry: Any
) -> None:
    router, _, _ = hf_router(fake_server)
    fake_server.fail(PRIMARY, fault, **params)  # type: ignore[arg-type]
    started = time.monotonic()
    assert router.call("hello world") == f"[{BACKUP}] hello world"
    assert time.monotonic() - started < ATTEMPT_TIMEOUT_S + 2.0
    assert_failed_over(telemetry, kind)


def test_refused_connection_fails_over(
    fake_server: FakeModelServer, closed_url: str, telemetry: Any
) -> None:
    router, _, _ = hf_router(fake_server, primary_url=closed_url)
    assert router.call("hello") == f"[{BACKUP}] hello"
    assert_failed_over(telemetry, semconv.ERROR_UNAVAILABLE)


def test_429_benches_the_primary_for_its_retry_after(fake_server: FakeModelServer) -> None:
    router, _, _ = hf_router(fake_server)
    fake_server.fail(PRIMARY, "rate_limit", retry_after=30, times=1)
    for _ in range(5):
        assert router.call("x").startswith(f"[{BACKUP}]")
    assert fake_server.request_count(PRIMARY) == 1  # benched: asked once, not five times
    status = router.status()[0]
    assert status.retry_after_s is not None
    assert 25.0 < status.retry_after_s <= 30.0
    assert status.state == "closed"  # 429 is not a fault of the backend


def test_rate_limit_headers_feed_the_remaining_gauge(
    fake_server: FakeModelServer, telemetry: Any
) -> None:
    router, _, _ = hf_router(fake_server)
    fake_server.fail(
        PRIMARY,
        "rate_limit",
        times=1,
        headers={"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "0"},
    )
    router.call("x")
    points = telemetry.points(semconv.RATE_LIMIT_REMAINING.name)
    values = {
        (a[semconv.GEN_AI_REQUEST_MODEL], a[semconv.RATE_LIMIT_RESOURCE]): p.value
        for a, p in points
    }
    assert values[(PRIMARY, "requests")] == 0.0
    assert router.status()[0].rate_limit_remaining["requests"] == 0.0


def test_dead_primary_costs_one_failed_attempt_per_breaker_window(
    fake_server: FakeModelServer,
) -> None:
    router, _, _ = hf_router(fake_server)
    fake_server.fail(PRIMARY, "server_error")
    for _ in range(10):
        assert router.call("x").startswith(f"[{BACKUP}]")
    assert fake_server.request_count(PRIMARY) == 3  # then the breaker keeps it out
    assert router.status()[0].state == "open"


def test_primary_recovers_through_its_probe_without_user_traffic(
    fake_server: FakeModelServer,
) -> None:
    probe_client = InferenceClient(model=fake_server.model_url(PRIMARY), timeout=1.0)
    primary = InferenceClient(model=fake_server.model_url(PRIMARY), timeout=1.0)
    backup = InferenceClient(model=fake_server.model_url(BACKUP), timeout=1.0)
    router = Router(
        "recover",
        [
            Backend(
                lambda p: primary.text_generation(p, max_new_tokens=4),
                model=PRIMARY,
                provider="huggingface",
                probe=lambda: probe_client.text_generation("ping", max_new_tokens=1),
            ),
            Backend(
                lambda p: backup.text_generation(p, max_new_tokens=4),
                model=BACKUP,
                provider="huggingface",
            ),
        ],
        breaker=BreakerPolicy(probe_interval_s=0.05),
    )
    closed, opened = threading.Event(), threading.Event()
    router.breaker(PRIMARY).add_listener(
        lambda _b, t: (
            (closed if t.to_state == "closed" else opened).set()
            if t.to_state in ("open", "closed")
            else None
        )
    )
    fake_server.fail(PRIMARY, "server_error")
    for _ in range(3):
        router.call("x")
    assert opened.is_set()  # (its probe may already be trying it: half-open)
    assert router.status()[0].state in ("open", "half_open")
    fake_server.heal(PRIMARY)
    assert closed.wait(10.0)  # the probe saw it heal (~0.1 s): no user call was needed
    assert router.call("back") == f"[{PRIMARY}] back"


def test_bad_request_surfaces_the_clients_own_exception(fake_server: FakeModelServer) -> None:
    router, _, _ = hf_router(fake_server)
    fake_server.fail(PRIMARY, "bad_request", message="Input validation error: too long")
    with pytest.raises(Exception) as info:
        router.call("x")
    assert type(info.value).__module__.startswith("huggingface_hub")
    assert fake_server.request_count(BACKUP) == 0


def test_everything_down_raises_all_backends_failed_chained_to_the_last_error(
    fake_server: FakeModelServer,
) -> None:
    router, _, _ = hf_router(fake_server, retry=RetryPolicy(max_retries=0))
    fake_server.fail("*", "server_error")
    with pytest.raises(AllBackendsFailedError) as info:
        router.call("x")
    assert [(a.model, a.error_kind) for a in info.value.attempts] == [
        (PRIMARY, semconv.ERROR_UNAVAILABLE),
        (BACKUP, semconv.ERROR_UNAVAILABLE),
    ]
    assert info.value.__cause__ is info.value.attempts[-1].exception


# ---------------------------------------------------------------------- openai, sync
@pytest.fixture
def oai(fake_server: FakeModelServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=fake_server.openai_base_url,
        api_key="sk-test",
        max_retries=0,
        timeout=httpx.Timeout(CLIENT_TIMEOUT_S),
    ) as client:
        yield client


def openai_router(client: Any, **kw: Any) -> Router:
    def ask(model: str) -> Any:
        def call(prompt: str) -> Any:
            return client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}]
            )

        return call

    kw.setdefault("attempt_timeout_s", ATTEMPT_TIMEOUT_S)
    return Router(
        "oai",
        [
            Backend(ask(GPT), model=GPT, provider="openai"),
            Backend(ask(GPT_BACKUP), model=GPT_BACKUP, provider="openai"),
        ],
        **kw,
    )


@pytest.mark.parametrize(("fault", "params", "kind"), HF_FAULTS, ids=[f[0] for f in HF_FAULTS])
def test_openai_primary_fault_fails_over(
    fault: str,
    params: dict[str, Any],
    kind: str,
    fake_server: FakeModelServer,
    oai: openai.OpenAI,
    telemetry: Any,
) -> None:
    router = openai_router(oai)
    fake_server.fail(GPT, fault, **params)  # type: ignore[arg-type]
    completion = router.call("hi there")
    assert completion.model == GPT_BACKUP
    assert_failed_over(telemetry, kind, GPT)
    (backup_span,) = telemetry.spans(f"chat {GPT_BACKUP}")
    assert backup_span.attributes[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == (
        completion.usage.completion_tokens
    )


# ---------------------------------------------------------------------- streams
def openai_stream_router(client: Any, **kw: Any) -> Router:
    def stream(model: str) -> Any:
        def call(prompt: str) -> Iterator[str]:
            chunks = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}], stream=True
            )
            with chunks:
                for chunk in chunks:
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content

        return call

    return Router(
        "oai-stream",
        [
            Backend(stream(GPT), model=GPT, provider="openai"),
            Backend(stream(GPT_BACKUP), model=GPT_BACKUP, provider="openai"),
        ],
        **kw,
    )


def test_slow_first_chunk_fails_over_before_any_content(
    fake_server: FakeModelServer, oai: openai.OpenAI, telemetry: Any
) -> None:
    router = openai_stream_router(oai, first_chunk_timeout_s=ATTEMPT_TIMEOUT_S)
    fake_server.fail(GPT, "slow_first_chunk", delay=3.0)
    started = time.monotonic()
    text = "".join(router.stream("one two three"))
    assert time.monotonic() - started < ATTEMPT_TIMEOUT_S + 2.0
    assert text.startswith(f"[{GPT_BACKUP}]")
    assert_failed_over(telemetry, semconv.ERROR_TIMEOUT, GPT)


def test_stream_cut_after_content_raises_typed_error_and_counts(
    fake_server: FakeModelServer, oai: openai.OpenAI, telemetry: Any
) -> None:
    router = openai_stream_router(oai)
    fake_server.fail(GPT, "cut_stream", after=2)
    received = []
    with pytest.raises(StreamInterruptedError) as info:
        for chunk in router.stream("one two three four five six"):
            received.append(chunk)
    assert info.value.model == GPT
    assert info.value.chunks == len(received) > 0
    assert info.value.__cause__ is not None
    assert fake_server.request_count(GPT_BACKUP) == 0  # content was delivered: no failover
    assert router.status()[0].last_error == info.value.kind
    (route,) = telemetry.spans("route oai-stream")
    assert route.attributes[semconv.ERROR_TYPE] == info.value.kind


def test_healthy_stream_delivers_every_chunk_and_one_attempt_span(
    fake_server: FakeModelServer, oai: openai.OpenAI, telemetry: Any
) -> None:
    router = openai_stream_router(oai)
    text = "".join(router.stream("alpha beta"))
    assert text == f"[{GPT}] alpha beta"
    (attempt,) = telemetry.spans(f"chat {GPT}")
    (route,) = telemetry.spans("route oai-stream")
    assert attempt.parent.span_id == route.context.span_id
    assert any(e.name == semconv.EVENT_FIRST_CHUNK for e in attempt.events)


# ---------------------------------------------------------------------- async twins
@pytest.mark.parametrize(
    ("fault", "params", "kind"),
    [HF_FAULTS[1], HF_FAULTS[3], HF_FAULTS[4]],
    ids=["server_error", "rate_limit", "hang"],
)
async def test_async_huggingface_fails_over(
    fault: str, params: dict[str, Any], kind: str, fake_server: FakeModelServer, telemetry: Any
) -> None:
    primary = AsyncInferenceClient(model=fake_server.model_url(PRIMARY), timeout=CLIENT_TIMEOUT_S)
    backup = AsyncInferenceClient(model=fake_server.model_url(BACKUP), timeout=CLIENT_TIMEOUT_S)
    async with primary, backup:
        await _async_hf_case(fault, params, kind, fake_server, telemetry, primary, backup)


async def _async_hf_case(
    fault: str,
    params: dict[str, Any],
    kind: str,
    fake_server: FakeModelServer,
    telemetry: Any,
    primary: AsyncInferenceClient,
    backup: AsyncInferenceClient,
) -> None:
    async def ask_primary(p: str) -> str:
        return await primary.text_generation(p, max_new_tokens=4)

    async def ask_backup(p: str) -> str:
        return await backup.text_generation(p, max_new_tokens=4)

    router = Router(
        "ahf",
        [
            Backend(
                ask_primary, model=PRIMARY, provider="huggingface", operation="text_generation"
            ),
            Backend(ask_backup, model=BACKUP, provider="huggingface", operation="text_generation"),
        ],
        attempt_timeout_s=ATTEMPT_TIMEOUT_S,
    )
    fake_server.fail(PRIMARY, fault, **params)  # type: ignore[arg-type]
    started = time.monotonic()
    assert await router.acall("hi") == f"[{BACKUP}] hi"
    assert time.monotonic() - started < ATTEMPT_TIMEOUT_S + 2.0
    assert_failed_over(telemetry, kind)


async def test_async_openai_stream_cut_and_slow_first_chunk(
    fake_server: FakeModelServer, telemetry: Any
) -> None:
    async with openai.AsyncOpenAI(
        base_url=fake_server.openai_base_url, api_key="sk-test", max_retries=0
    ) as client:

        def stream(model: str) -> Any:
            async def call(prompt: str) -> Any:
                chunks = await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": prompt}], stream=True
                )
                async with chunks:
                    async for chunk in chunks:
                        if chunk.choices and chunk.choices[0].delta.content:
                            yield chunk.choices[0].delta.content

            return call

        router = Router(
            "aoai",
            [
                Backend(stream(GPT), model=GPT, provider="openai"),
                Backend(stream(GPT_BACKUP), model=GPT_BACKUP, provider="openai"),
            ],
            first_chunk_timeout_s=ATTEMPT_TIMEOUT_S,
        )
        fake_server.fail(GPT, "slow_first_chunk", delay=3.0, times=1)
        text = "".join([c async for c in router.astream("one two")])
        assert text == f"[{GPT_BACKUP}] one two"
        fake_server.fail(GPT, "cut_stream", after=2, times=1)
        received = []
        with pytest.raises(StreamInterruptedError) as info:
            async for chunk in router.astream("one two three four five"):
                received.append(chunk)
        assert info.value.chunks == len(received) > 0


async def test_async_cancellation_mid_call_releases_the_trial_permit(
    fake_server: FakeModelServer,
) -> None:
    client = AsyncInferenceClient(model=fake_server.model_url(PRIMARY), timeout=CLIENT_TIMEOUT_S)
    async with client:
        await _cancel_case(fake_server, client)


async def _cancel_case(fake_server: FakeModelServer, client: AsyncInferenceClient) -> None:
    async def ask(p: str) -> str:
        return await client.text_generation(p, max_new_tokens=4)

    router = Router("cancel", [Backend(ask, model=PRIMARY, provider="huggingface")])
    breaker = router.breaker(PRIMARY)
    breaker.force_open()
    breaker._open_until = 0.0  # its open time is over: the next call is the trial
    fake_server.fail(PRIMARY, "hang")
    task = asyncio.create_task(router.acall("x"))
    for _ in range(200):
        if breaker.trials_in_flight:
            break
        await asyncio.sleep(0.005)
    assert breaker.trials_in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.trials_in_flight == 0
    assert breaker.state == "half_open"  # not counted as a failed trial


def test_huggingface_streams_fail_over_before_content_and_break_typed_after(
    fake_server: FakeModelServer, telemetry: Any
) -> None:
    primary = InferenceClient(model=fake_server.model_url(PRIMARY), timeout=CLIENT_TIMEOUT_S)
    backup = InferenceClient(model=fake_server.model_url(BACKUP), timeout=CLIENT_TIMEOUT_S)
    router = Router(
        "hf-stream",
        [
            Backend(
                lambda p: primary.text_generation(p, max_new_tokens=8, stream=True),
                model=PRIMARY,
                provider="huggingface",
                operation="text_generation",
            ),
            Backend(
                lambda p: backup.text_generation(p, max_new_tokens=8, stream=True),
                model=BACKUP,
                provider="huggingface",
                operation="text_generation",
            ),
        ],
        first_chunk_timeout_s=ATTEMPT_TIMEOUT_S,
    )
    fake_server.fail(PRIMARY, "slow_first_chunk", delay=3.0, times=1)
    text = "".join(router.stream("one two three"))
    assert BACKUP in text
    assert_failed_over(telemetry, semconv.ERROR_TIMEOUT)
    fake_server.fail(PRIMARY, "cut_stream", after=2, times=1)
    got = []
    with pytest.raises(StreamInterruptedError) as info:
        for chunk in router.stream("one two three four five six"):
            got.append(chunk)
    assert info.value.chunks == len(got) > 0
    assert info.value.model == PRIMARY
