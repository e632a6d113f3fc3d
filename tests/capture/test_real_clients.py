"""@monitored around the real huggingface_hub and openai clients talking to FakeModelServer:
usage read from real responses, and every fault becomes the right error.type on the span and the
duration metric, with the client's own exception passed through untouched."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient

import modelwatch
from modelwatch.testing import Captured, FakeModelServer

FLAN = "google/flan-t5-large"
GPT = "gpt-4o-mini"

FAULTS = [
    ("loading", {}, "unavailable"),
    ("rate_limit", {"retry_after": 2}, "rate_limited"),
    ("server_error", {}, "unavailable"),
    ("auth", {}, "auth"),
    ("not_found", {}, "not_found"),
    ("bad_request", {}, "bad_request"),
    ("reset", {}, "unavailable"),
    ("hang", {}, "timeout"),
]


def _hf(server: FakeModelServer) -> InferenceClient:
    return InferenceClient(model=server.model_url(FLAN), timeout=0.5)


@pytest.mark.parametrize(("fault", "params", "kind"), FAULTS, ids=[f[0] for f in FAULTS])
def test_huggingface_faults_become_error_kinds(
    fault: str,
    params: dict[str, Any],
    kind: str,
    fake_server: FakeModelServer,
    modelwatch_capture: Captured,
) -> None:
    client = _hf(fake_server)
    fake_server.fail(FLAN, fault, **params)  # type: ignore[arg-type]

    @modelwatch.monitored(model=FLAN, provider="huggingface", operation="text_generation")
    def generate() -> Any:
        return client.text_generation("hello", max_new_tokens=4)

    with pytest.raises(Exception) as raised:
        generate()
    assert type(raised.value).__module__.split(".")[0] in {
        "huggingface_hub",
        "requests",
        "httpx",
        "httpx2",
    }
    span = modelwatch_capture.span(f"text_completion {FLAN}")
    assert span.attributes is not None
    assert span.attributes["error.type"] == kind
    assert (
        modelwatch_capture.metric_count("gen_ai.client.operation.duration", {"error.type": kind})
        == 1
    )
    fake_server.heal()


@pytest.mark.parametrize(("fault", "params", "kind"), FAULTS, ids=[f[0] for f in FAULTS])
def test_openai_faults_become_error_kinds(
    fault: str,
    params: dict[str, Any],
    kind: str,
    fake_server: FakeModelServer,
    modelwatch_capture: Captured,
) -> None:
    fake_server.fail(GPT, fault, **params)  # type: ignore[arg-type]
    with openai.OpenAI(
        base_url=fake_server.openai_base_url,
        api_key="sk-test-abcdefghijkl",
        max_retries=0,
        timeout=httpx.Timeout(0.5),
    ) as client:

        @modelwatch.monitored(model=GPT, provider="openai")
        def ask() -> Any:
            return client.chat.completions.create(
                model=GPT, messages=[{"role": "user", "content": "hi"}]
            )

        with pytest.raises(openai.OpenAIError):
            ask()
    span = modelwatch_capture.span(f"chat {GPT}")
    assert span.attributes is not None
    assert span.attributes["error.type"] == kind
    # the API key never reaches telemetry
    assert "sk-test-abcdefghijkl" not in repr([e.attributes for e in span.events])
    fake_server.heal()


def test_usage_from_real_openai_and_hf_responses(
    fake_server: FakeModelServer, modelwatch_capture: Captured
) -> None:
    with openai.OpenAI(
        base_url=fake_server.openai_base_url, api_key="sk-test", max_retries=0
    ) as client:

        @modelwatch.monitored(model=GPT, provider="openai")
        def ask() -> Any:
            return client.chat.completions.create(
                model=GPT, messages=[{"role": "user", "content": "count my tokens"}]
            )

        completion = ask()
    hf = InferenceClient(model=fake_server.model_url(FLAN))

    @modelwatch.monitored(model=FLAN, provider="huggingface", operation="text_generation")
    def generate() -> Any:
        return hf.text_generation("hello there", max_new_tokens=4, details=True)

    output = generate()
    assert completion.usage is not None
    gpt_span = modelwatch_capture.span(f"chat {GPT}")
    assert gpt_span.attributes is not None
    assert gpt_span.attributes["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert gpt_span.attributes["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert gpt_span.attributes["gen_ai.response.model"] == completion.model
    flan_span = modelwatch_capture.span(f"text_completion {FLAN}")
    assert flan_span.attributes is not None
    assert output.details is not None
    assert flan_span.attributes["gen_ai.usage.output_tokens"] == output.details.generated_tokens


def test_openai_stream_with_usage_through_a_monitored_generator(
    fake_server: FakeModelServer, modelwatch_capture: Captured
) -> None:
    with openai.OpenAI(
        base_url=fake_server.openai_base_url, api_key="sk-test", max_retries=0
    ) as client:

        @modelwatch.monitored(model=GPT, provider="openai")
        def stream() -> Any:
            chunks = client.chat.completions.create(
                model=GPT,
                messages=[{"role": "user", "content": "stream please"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            with chunks:
                yield from chunks

        text = "".join(c.choices[0].delta.content or "" for c in stream() if c.choices)
    assert text
    span = modelwatch_capture.span(f"chat {GPT}")
    assert span.attributes is not None
    assert span.attributes["gen_ai.usage.output_tokens"] > 0
    assert modelwatch_capture.metric_count("gen_ai.client.operation.time_to_first_chunk") == 1
