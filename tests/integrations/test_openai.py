"""modelwatch.openai: the real openai clients against FakeModelServer. Sync and async mirrored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from opentelemetry.trace import StatusCode

import modelwatch.openai
from modelwatch.capture import _settings
from modelwatch.testing import Captured
from modelwatch.testing.fake_server import FakeModelServer

MODEL = "gpt-4o-mini"
DURATION = "gen_ai.client.operation.duration"
TPOC = "gen_ai.client.operation.time_per_output_chunk"
MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "review this code"},
]


@pytest.fixture
def instrumented() -> Iterator[None]:
    modelwatch.openai.instrument()
    try:
        yield
    finally:
        modelwatch.openai.uninstrument()


@pytest.fixture
def client(fake_server: FakeModelServer, instrumented: None) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake_server.openai_base_url, api_key="sk-test", max_retries=0) as c:
        yield c


@pytest.fixture
async def aclient(
    fake_server: FakeModelServer, instrumented: None
) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=fake_server.openai_base_url, api_key="sk-test", max_retries=0
    ) as c:
        yield c


def attrs(cap: Captured, name: str) -> dict[str, Any]:
    return dict(cap.span(name).attributes or {})


def _check_chat(cap: Captured, out: Any, port: int) -> None:
    a = attrs(cap, f"chat {MODEL}")
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert (a["server.address"], a["server.port"]) == ("127.0.0.1", port)
    assert a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.request.seed"] == 3
    assert a["gen_ai.request.stop_sequences"] == ("END",)
    assert a["gen_ai.request.choice.count"] == 1
    assert a["gen_ai.output.type"] == "json"
    assert a["gen_ai.response.id"] == out.id
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.usage.input_tokens"] == out.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == out.usage.completion_tokens
    assert "gen_ai.input.messages" not in a  # content capture is off by default
    point = cap.metric_points(DURATION)[0]
    assert point.attributes["server.port"] == port
    assert cap.metric_count(DURATION, {"gen_ai.request.model": MODEL}) == 1


CHAT_ARGS: dict[str, Any] = {
    "model": MODEL,
    "messages": MESSAGES,
    "temperature": 0.2,
    "max_tokens": 50,
    "seed": 3,
    "stop": "END",
    "n": 1,
    "response_format": {"type": "json_object"},
}


def test_chat_completion(
    client: openai.OpenAI, fake_server: FakeModelServer, modelwatch_capture: Captured
) -> None:
    out = client.chat.completions.create(**CHAT_ARGS)
    _check_chat(modelwatch_capture, out, fake_server.port)


async def test_async_chat_completion(
    aclient: openai.AsyncOpenAI, fake_server: FakeModelServer, modelwatch_capture: Captured
) -> None:
    out = await aclient.chat.completions.create(**CHAT_ARGS)
    _check_chat(modelwatch_capture, out, fake_server.port)


def _check_stream(cap: Captured, text: str, chunks: int) -> None:
    a = attrs(cap, f"chat {MODEL}")
    assert a["gen_ai.request.stream"] is True
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.usage.output_tokens"] == len(text.split())
    assert str(a["gen_ai.response.id"]).startswith("chatcmpl-")
    output = json.loads(str(a["gen_ai.output.messages"]))
    assert output == [
        {"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": "stop"}
    ]
    system = json.loads(str(a["gen_ai.system_instructions"]))
    assert system == [{"type": "text", "content": "be brief"}]
    assert json.loads(str(a["gen_ai.input.messages"]))[0]["role"] == "user"
    assert cap.metric_count(DURATION) == 1
    assert cap.metric_count(TPOC) == chunks - 1  # one per chunk after the first


STREAM_ARGS: dict[str, Any] = {
    "model": MODEL,
    "messages": MESSAGES,
    "stream": True,
    "stream_options": {"include_usage": True},
}


def test_stream_with_usage_and_content(
    client: openai.OpenAI, modelwatch_capture: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_settings, "capture_content", True)
    chunks = list(client.chat.completions.create(**STREAM_ARGS))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    _check_stream(modelwatch_capture, text, len(chunks))


async def test_async_stream_with_usage_and_content(
    aclient: openai.AsyncOpenAI, modelwatch_capture: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_settings, "capture_content", True)
    stream = await aclient.chat.completions.create(**STREAM_ARGS)
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    _check_stream(modelwatch_capture, text, len(chunks))


def test_completions_and_embeddings(client: openai.OpenAI, modelwatch_capture: Captured) -> None:
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hello there", top_p=0.5)
    text = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="a b", stream=True
        )
        if c.choices
    )
    assert text
    client.embeddings.create(model="text-embedding-3-small", input=["a", "b c"], dimensions=8)
    completions = modelwatch_capture.find_spans("text_completion gpt-3.5-turbo-instruct")
    assert len(completions) == 2
    assert (completions[0].attributes or {})["gen_ai.request.top_p"] == 0.5
    assert (completions[1].attributes or {})["gen_ai.response.finish_reasons"] == ("stop",)
    e = attrs(modelwatch_capture, "embeddings text-embedding-3-small")
    assert e["gen_ai.embeddings.dimension.count"] == 8
    assert e["gen_ai.usage.input_tokens"] == 3


async def test_async_completions_and_embeddings(
    aclient: openai.AsyncOpenAI, modelwatch_capture: Captured
) -> None:
    await aclient.completions.create(model="gpt-3.5-turbo-instruct", prompt="hello", top_p=0.5)
    await aclient.embeddings.create(model="text-embedding-3-small", input="a b", dimensions=8)
    c = attrs(modelwatch_capture, "text_completion gpt-3.5-turbo-instruct")
    assert c["gen_ai.request.top_p"] == 0.5
    e = attrs(modelwatch_capture, "embeddings text-embedding-3-small")
    assert e["gen_ai.embeddings.dimension.count"] == 8


def test_errors_keep_their_exception_and_get_a_kind(
    client: openai.OpenAI, fake_server: FakeModelServer, modelwatch_capture: Captured
) -> None:
    fake_server.fail(MODEL, "rate_limit", times=1)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    span = modelwatch_capture.span(f"chat {MODEL}")
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "rate_limited"


async def test_async_errors_keep_their_exception_and_get_a_kind(
    aclient: openai.AsyncOpenAI, fake_server: FakeModelServer, modelwatch_capture: Captured
) -> None:
    fake_server.fail(MODEL, "server_error", status=503, times=1)
    with pytest.raises(openai.InternalServerError):
        await aclient.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert attrs(modelwatch_capture, f"chat {MODEL}")["error.type"] == "unavailable"


def test_instrument_is_idempotent_and_uninstrument_restores(fake_server: FakeModelServer) -> None:
    from openai.resources.chat.completions import AsyncCompletions, Completions

    before = Completions.__dict__["create"], AsyncCompletions.__dict__["create"]
    modelwatch.openai.instrument()
    once = Completions.__dict__["create"]
    modelwatch.openai.instrument()
    assert Completions.__dict__["create"] is once is not before[0]
    assert modelwatch.openai.is_instrumented()
    modelwatch.openai.uninstrument()
    assert (Completions.__dict__["create"], AsyncCompletions.__dict__["create"]) == before
    assert not modelwatch.openai.is_instrumented()


def test_content_capture_event_only_from_the_util_genai_variable(tmp_path: Any) -> None:
    """In a fresh process: EVENT_ONLY puts content on the inference-details event only."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent("""
        import json
        import modelwatch
        from modelwatch.testing import capture
        with capture() as cap:
            with modelwatch.monitored(model="m", provider="p") as call:
                call.record_messages(input="hi", output="ho")
        (span,) = cap.spans
        print(json.dumps({"attrs": sorted(span.attributes),
                          "events": [e.name for e in span.events],
                          "event": dict(span.events[0].attributes)}))
    """)
    )
    env = {**os.environ, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "EVENT_ONLY"}
    env.pop("MODELWATCH_CAPTURE_CONTENT", None)
    out = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert "gen_ai.input.messages" not in got["attrs"]
    assert got["events"] == ["gen_ai.client.inference.operation.details"]
    assert json.loads(got["event"]["gen_ai.output.messages"])[0]["role"] == "assistant"


def test_opentelemetry_instrument_turns_the_integration_on(
    tmp_path: Any, fake_server: FakeModelServer
) -> None:
    """``opentelemetry-instrument python app.py`` loads our entry point: the call is monitored
    with no modelwatch code in the app but the capture."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(f"""
        import openai
        from modelwatch.testing import capture
        with capture() as cap:
            c = openai.OpenAI(base_url={fake_server.openai_base_url!r}, api_key="sk-x")
            c.chat.completions.create(model="gpt-4o-mini",
                                      messages=[{{"role": "user", "content": "hi"}}])
        print(sorted(s.name for s in cap.spans))
    """)
    )
    tool = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "system_metrics",
    }
    out = subprocess.run(
        [tool, sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "'chat gpt-4o-mini'" in out.stdout.strip().splitlines()[-1], out.stderr
