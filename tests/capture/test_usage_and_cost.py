"""Token usage from real client response types, the usage= callable, the nested-call rule,
and cost from the shipped price table and overrides."""

from __future__ import annotations

from typing import Any

import pytest
from huggingface_hub import (
    ChatCompletionOutput,
    TextGenerationOutput,
)
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import modelwatch
from modelwatch.capture import cost
from modelwatch.capture.usage import Usage, extract_usage
from modelwatch.testing import Captured

TOKENS = "gen_ai.client.token.usage"
COST = "modelwatch.cost"


def openai_completion() -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "fine"},
                }
            ],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
        }
    )


def hf_chat() -> ChatCompletionOutput:
    return ChatCompletionOutput.parse_obj_as_instance(  # type: ignore[attr-defined]
        {
            "id": "x",
            "created": 0,
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "system_fingerprint": "tgi",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "ok"},
                }
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27},
        }
    )


def hf_text_generation() -> TextGenerationOutput:
    return TextGenerationOutput.parse_obj_as_instance(  # type: ignore[attr-defined]
        {
            "generated_text": "summary",
            "details": {
                "finish_reason": "length",
                "generated_tokens": 9,
                "prefill": [{"id": 1, "text": "a", "logprob": None}] * 4,
                "tokens": [],
            },
        }
    )


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (openai_completion, Usage(1000, 500, "gpt-4o-mini-2024-07-18")),
        (hf_chat, Usage(20, 7, "meta-llama/Llama-3.1-8B-Instruct")),
        (hf_text_generation, Usage(4, 9, None)),
        (lambda: {"usage": {"input_tokens": 3, "output_tokens": 4}}, Usage(3, 4, None)),
        (lambda: [{"generated_text": "x", "details": {"generated_tokens": 2}}], Usage(None, 2)),
        (lambda: "plain text", Usage()),
        (lambda: None, Usage()),
        (lambda: {"usage": "garbage"}, Usage()),
        (lambda: {"usage": {"prompt_tokens": -5, "completion_tokens": True}}, Usage()),
    ],
)
def test_extract_usage_understands_client_types(result: Any, expected: Usage) -> None:
    assert extract_usage(result()) == expected


def test_openai_chunk_with_usage() -> None:
    chunk = ChatCompletionChunk.model_validate(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "gpt-4o",
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
        }
    )
    assert extract_usage(chunk) == Usage(5, 6, "gpt-4o")


def test_usage_and_cost_from_openai_return_value(modelwatch_capture: Captured) -> None:
    @modelwatch.monitored(model="gpt-4o-mini", provider="openai")
    def ask() -> ChatCompletion:
        return openai_completion()

    ask()
    assert modelwatch_capture.metric_sum(TOKENS, {"gen_ai.token.type": "input"}) == 1000
    assert modelwatch_capture.metric_sum(TOKENS, {"gen_ai.token.type": "output"}) == 500
    # gpt-4o-mini: 0.00015 / 1k input, 0.0006 / 1k output
    assert modelwatch_capture.metric_sum(COST) == pytest.approx(0.00015 + 0.0003)
    span = modelwatch_capture.span("chat gpt-4o-mini")
    assert span.attributes is not None
    assert span.attributes["modelwatch.cost"] == pytest.approx(0.00045)
    points = modelwatch_capture.metric_points(TOKENS)
    assert {p.attributes["gen_ai.response.model"] for p in points} == {"gpt-4o-mini-2024-07-18"}


@pytest.mark.parametrize(
    "extractor",
    [
        lambda r: (r["in"], r["out"]),
        lambda r: {"input_tokens": r["in"], "output_tokens": r["out"]},
        lambda r: {"usage": {"prompt_tokens": r["in"], "completion_tokens": r["out"]}},
    ],
)
def test_usage_callable(extractor: Any, modelwatch_capture: Captured) -> None:
    @modelwatch.monitored(model="m", provider="p", usage=extractor)
    def call() -> dict[str, int]:
        return {"in": 7, "out": 8}

    assert call() == {"in": 7, "out": 8}
    assert modelwatch_capture.metric_sum(TOKENS) == 15


def test_failing_usage_callable_costs_telemetry_not_the_result(
    modelwatch_capture: Captured,
) -> None:
    def broken(_: object) -> tuple[int, int]:
        raise RuntimeError("extractor bug")

    @modelwatch.monitored(model="m", provider="p", usage=broken)
    def call() -> str:
        return "result"

    assert call() == "result"
    assert modelwatch_capture.metric_count("gen_ai.client.operation.duration") == 1
    assert modelwatch_capture.metric_points(TOKENS) == []


def test_explicit_usage_wins_over_return_value(modelwatch_capture: Captured) -> None:
    @modelwatch.monitored(model="m", provider="p")
    def call() -> dict[str, Any]:
        modelwatch.current_call().record_usage(input_tokens=1, output_tokens=1)  # type: ignore[union-attr]
        return {"usage": {"prompt_tokens": 100, "completion_tokens": 100}}

    call()
    assert modelwatch_capture.metric_sum(TOKENS) == 2


def test_nested_same_model_counts_tokens_and_cost_once(modelwatch_capture: Captured) -> None:
    model = "google/flan-t5-large"

    @modelwatch.monitored(model=model, provider="huggingface")
    def client_call() -> dict[str, Any]:
        return {"usage": {"prompt_tokens": 30, "completion_tokens": 10}, "model": model}

    @modelwatch.monitored(model=model, provider="huggingface", analysis="code_review")
    def review() -> dict[str, Any]:
        return client_call()

    review()
    spans = modelwatch_capture.find_spans(f"chat {model}")
    assert len(spans) == 2  # both spans exist, child under parent
    assert modelwatch_capture.metric_sum(TOKENS) == 40
    assert modelwatch_capture.metric_count("gen_ai.client.operation.duration") == 1
    # the one observation carries the outer call's analysis
    (point,) = modelwatch_capture.metric_points("gen_ai.client.operation.duration")
    assert point.attributes["modelwatch.analysis"] == "code_review"
    assert modelwatch_capture.metric_sum(COST) == pytest.approx(0.0006)


def test_nested_different_models_count_separately(modelwatch_capture: Captured) -> None:
    @modelwatch.monitored(model="facebook/bart-large-cnn", provider="huggingface")
    def summarize() -> dict[str, Any]:
        return {"usage": {"prompt_tokens": 5, "completion_tokens": 5}}

    @modelwatch.monitored(model="google/flan-t5-large", provider="huggingface")
    def pipeline() -> dict[str, Any]:
        summarize()
        return {"usage": {"prompt_tokens": 1, "completion_tokens": 1}}

    pipeline()
    assert modelwatch_capture.metric_count("gen_ai.client.operation.duration") == 2
    assert modelwatch_capture.metric_sum(TOKENS) == 12
    assert modelwatch_capture.metric_sum(COST) == pytest.approx(0.0012)


def test_price_lookup_rules() -> None:
    table = cost.PriceTable()
    assert table.lookup("google/flan-t5-large") == cost.Price(per_request=0.0006)
    assert table.lookup("gpt-4o-2024-08-06") == table.lookup("gpt-4o")
    assert table.lookup("gpt-4o-mini-2024-07-18") == table.lookup("gpt-4o-mini")
    assert table.lookup("openai/gpt-4o") == table.lookup("gpt-4o")
    assert table.lookup("nobody/knows-this") is None
    table.set_overrides({"nobody/knows-this": cost.Price(per_request=1.0)})
    assert table.lookup("nobody/knows-this") == cost.Price(per_request=1.0)
    assert table.lookup("google/flan-t5-large") == cost.Price(per_request=0.0006)


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        ([1, 2], "mapping"),
        ({"m": {"per_token": 1.0}}, "unknown key"),
        ({"m": {"per_request": -1}}, ">= 0"),
        ({"m": {"per_request": "free"}}, ">= 0"),
        ({"": {"per_request": 1}}, "non-empty"),
        ({"m": {}}, "mapping with any of"),
    ],
)
def test_bad_prices_are_rejected_clearly(prices: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cost.parse_prices(prices)


def test_unpriced_model_has_no_cost(modelwatch_capture: Captured) -> None:
    with modelwatch.monitored(model="in-house/model", provider="local") as call:
        call.record_usage(10, 10)
    assert call.cost is None
    assert modelwatch_capture.metric_points(COST) == []
