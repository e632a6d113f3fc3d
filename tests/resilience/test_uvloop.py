"""``acall`` on uvloop, the loop ``uvicorn[standard]`` runs: the router's one-timer-per-loop
attempt timeouts (``resilience/_timeouts.py``) against the real ``openai`` async client and
FakeModelServer, with asyncio's cancellation semantics kept."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from modelwatch import semconv
from modelwatch.resilience import _timeouts
from modelwatch.resilience.backend import Backend
from modelwatch.resilience.router import Router
from modelwatch.testing import FakeModelServer

uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (pip install uvloop)")

GPT = "gpt-4o-mini"
GPT_BACKUP = "gpt-4o"
ATTEMPT_TIMEOUT_S = 1.0  # the client's own timeout is 30 s: the router's acted


def _router(client: openai.AsyncOpenAI) -> Router:
    def chat(model: str) -> Any:
        async def call(prompt: str) -> str:
            answer = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}]
            )
            return answer.choices[0].message.content or ""

        return call

    return Router(
        "uvloop",
        [
            Backend(chat(GPT), model=GPT, provider="openai"),
            Backend(chat(GPT_BACKUP), model=GPT_BACKUP, provider="openai"),
        ],
        attempt_timeout_s=ATTEMPT_TIMEOUT_S,
    )


def _client(server: FakeModelServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=server.openai_base_url, api_key="sk-test", max_retries=0, timeout=30.0
    )


def test_a_hung_primary_times_out_on_uvloop_and_the_backup_answers(
    fake_server: FakeModelServer, telemetry: Any
) -> None:
    fake_server.fail(GPT, "hang")

    async def main() -> tuple[str, bool, bool]:
        async with _client(fake_server) as client:
            answer = await _router(client).acall("one two")
        loop = asyncio.get_running_loop()
        return answer, isinstance(loop, uvloop.Loop), loop in _timeouts._watches

    answer, on_uvloop, watched = uvloop.run(main())
    assert on_uvloop
    assert watched  # the per-loop timer of this uvloop loop did the timing out
    assert answer == f"[{GPT_BACKUP}] one two"
    primary = [s for s in telemetry.spans() if s.attributes.get("gen_ai.request.model") == GPT]
    assert [s.attributes.get("error.type") for s in primary] == [semconv.ERROR_TIMEOUT]
    assert telemetry.counter("modelwatch.failovers", reason=semconv.ERROR_TIMEOUT) == 1


def test_a_callers_cancel_on_uvloop_stays_a_cancellation(
    fake_server: FakeModelServer, telemetry: Any
) -> None:
    fake_server.fail(GPT, "hang")

    async def main() -> bool:
        async with _client(fake_server) as client:
            task = asyncio.ensure_future(_router(client).acall("one two"))
            while fake_server.request_count(GPT) == 0:  # the attempt is in flight
                await asyncio.sleep(0.01)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                return task.cancelled()
        return False

    assert uvloop.run(main())  # not an AttemptTimeoutError, not a failover to the backup
    assert fake_server.request_count(GPT_BACKUP) == 0
    primary = [s for s in telemetry.spans() if s.attributes.get("gen_ai.request.model") == GPT]
    assert [s.attributes.get("error.type") for s in primary] == [semconv.ERROR_CANCELLED]
