"""modelwatch.huggingface: the real InferenceClient/AsyncInferenceClient against FakeModelServer."""

from __future__ import annotations

import gc
import inspect
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from huggingface_hub import AsyncInferenceClient, InferenceClient
from huggingface_hub.errors import HfHubHTTPError
from opentelemetry.trace import SpanKind, StatusCode

import modelwatch
import modelwatch.huggingface
from modelwatch.integrations.huggingface import resolve
from modelwatch.testing import Captured
from modelwatch.testing.fake_server import FakeModelServer

FLAN = "google/flan-t5-large"
BART = "facebook/bart-large-cnn"
DURATION = "gen_ai.client.operation.duration"
TOKENS = "gen_ai.client.token.usage"
TTFC = "gen_ai.client.operation.time_to_first_chunk"
WRAPPED = (
    "text_generation",
    "chat_completion",
    "summarization",
    "translation",
    "feature_extraction",
)


@pytest.fixture
def instrumented() -> Iterator[None]:
    modelwatch.huggingface.instrument()
    try:
        yield
    finally:
        modelwatch.huggingface.uninstrument()


@pytest.fixture
def client(fake_server: FakeModelServer, instrumented: None) -> Iterator[InferenceClient]:
    with InferenceClient(model=fake_server.model_url(FLAN)) as c:
        yield c


@pytest.fixture
async def aclient(
    fake_server: FakeModelServer, instrumented: None
) -> AsyncIterator[AsyncInferenceClient]:
    async with AsyncInferenceClient(model=fake_server.model_url(FLAN)) as c:
        yield c


def attrs(cap: Captured, name: str) -> dict[str, Any]:
    return dict(cap.span(name).attributes or {})


# --------------------------------------------------------------------------- instrument


def test_instrument_is_idempotent_and_uninstrument_restores_the_exact_originals() -> None:
    before = {
        (cls, name): cls.__dict__[name]
        for cls in (InferenceClient, AsyncInferenceClient)
        for name in WRAPPED
    }
    assert not modelwatch.huggingface.is_instrumented()
    modelwatch.huggingface.instrument()
    try:
        once = {key: key[0].__dict__[key[1]] for key in before}
        modelwatch.huggingface.instrument()
        twice = {key: key[0].__dict__[key[1]] for key in before}
        assert modelwatch.huggingface.is_instrumented()
        assert all(once[key] is not before[key] for key in before)
        assert once == twice  # the second instrument() wrapped nothing again
        # the wrapped methods keep the signatures and the sync/async nature
        for (cls, name), original in before.items():
            assert inspect.signature(getattr(cls, name)) == inspect.signature(original)
            assert inspect.iscoroutinefunction(getattr(cls, name)) == (
                inspect.iscoroutinefunction(original)
            )
            assert getattr(cls, name).__wrapped__ is original
    finally:
        modelwatch.huggingface.uninstrument()
    assert not modelwatch.huggingface.is_instrumented()
    assert all(key[0].__dict__[key[1]] is original for key, original in before.items())
    modelwatch.huggingface.uninstrument()  # harmless when not instrumented


def test_uninstrument_stops_the_telemetry_and_behaviour_is_unchanged(
    fake_server: FakeModelServer, modelwatch_capture: Captured
) -> None:
    with InferenceClient(model=fake_server.model_url(FLAN)) as c:
        modelwatch.huggingface.instrument()
        try:
            instrumented_answer = c.text_generation("same answer please")
        finally:
            modelwatch.huggingface.uninstrument()
        plain_answer = c.text_generation("same answer please")
    assert instrumented_answer == plain_answer == f"[{FLAN}] same answer please"
    assert len(modelwatch_capture.find_spans(f"text_completion {FLAN}")) == 1
    assert modelwatch_capture.metric_count(DURATION) == 1


def test_clients_created_before_instrument_are_covered(
    fake_server: FakeModelServer, modelwatch_capture: Captured
) -> None:
    with InferenceClient(model=fake_server.model_url(FLAN)) as early:
        modelwatch.huggingface.instrument()
        try:
            early.text_generation("hi")
        finally:
            modelwatch.huggingface.uninstrument()
    assert modelwatch_capture.metric_count(DURATION, {"gen_ai.request.model": FLAN}) == 1


# --------------------------------------------------------------------------- resolution


@pytest.mark.parametrize(
    ("client_model", "call_model", "expected"),
    [
        ("http://h:8080/models/google/flan-t5-large", None, (FLAN, "http://h:8080/models/" + FLAN)),
        (FLAN, None, (FLAN, None)),
        (FLAN, BART, (BART, None)),
        ("http://tgi.local:3000/v1", "tgi", ("tgi", "http://tgi.local:3000/v1")),
        ("http://tgi.local:3000/v1/", None, ("tgi.local:3000", "http://tgi.local:3000/v1/")),
        (
            None,
            "https://x.endpoints.huggingface.cloud",
            ("x.endpoints.huggingface.cloud", "https://x.endpoints.huggingface.cloud"),
        ),
        (None, None, ("unknown", None)),
    ],
)
def test_model_and_endpoint_resolution(
    client_model: str | None, call_model: str | None, expected: tuple[str, str | None]
) -> None:
    class FakeClient:
        model = client_model

    assert resolve(FakeClient(), call_model) == expected


# --------------------------------------------------------------------------- sync calls


def test_text_generation_emits_model_call_telemetry_with_usage(
    client: InferenceClient, fake_server: FakeModelServer, modelwatch_capture: Captured
) -> None:
    out = client.text_generation("review this code", details=True)
    assert out.generated_text == f"[{FLAN}] review this code"

    span = modelwatch_capture.span(f"text_completion {FLAN}")
    assert span.kind is SpanKind.CLIENT
    a = dict(span.attributes or {})
    assert a["gen_ai.operation.name"] == "text_completion"
    assert a["modelwatch.task"] == "text_generation"
    assert a["gen_ai.provider.name"] == "huggingface"
    assert a["gen_ai.request.model"] == FLAN
    assert a["server.address"] == "127.0.0.1"
    assert a["server.port"] == fake_server.port
    assert a["gen_ai.usage.output_tokens"] == out.details.generated_tokens == 4
    base = {
        "gen_ai.request.model": FLAN,
        "gen_ai.provider.name": "huggingface",
        "server.address": "127.0.0.1",
    }
    assert modelwatch_capture.metric_count(DURATION, base) == 1
    assert modelwatch_capture.metric_sum(TOKENS, {**base, "gen_ai.token.type": "output"}) == 4


def test_chat_completion_records_input_output_tokens_and_response_model(
    client: InferenceClient, modelwatch_capture: Captured
) -> None:
    out = client.chat_completion([{"role": "user", "content": "extract the requirements"}])
    assert out.usage is not None
    a = attrs(modelwatch_capture, f"chat {FLAN}")
    assert a["gen_ai.usage.input_tokens"] == out.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == out.usage.completion_tokens
    assert a["gen_ai.response.model"] == FLAN
    assert modelwatch_capture.metric_sum(TOKENS, {"gen_ai.token.type": "input"}) == (
        out.usage.prompt_tokens
    )


def test_openai_style_alias_goes_through_the_wrapper(
    client: InferenceClient, modelwatch_capture: Captured
) -> None:
    client.chat.completions.create(messages=[{"role": "user", "content": "alias"}])
    assert modelwatch_capture.metric_count(DURATION, {"gen_ai.operation.name": "chat"}) == 1


def test_call_model_argument_overrides_the_client_model(
    fake_server: FakeModelServer, instrumented: None, modelwatch_capture: Captured
) -> None:
    with InferenceClient() as c:
        c.summarization("First sentence here. Second one.", model=fake_server.model_url(BART))
    a = attrs(modelwatch_capture, f"text_completion {BART}")
    assert a["gen_ai.request.model"] == BART
    assert a["server.address"] == "127.0.0.1"


def test_summarization_and_translation(instrumented: None, modelwatch_capture: Captured) -> None:
    with (
        FakeModelServer(models={BART: "summarization", "t5-small": "translation"}) as server,
        InferenceClient() as c,
    ):
        summary = c.summarization("The cat sat. Then it left.", model=server.model_url(BART))
        c.translation("hello", model=server.model_url("t5-small"))
    assert summary.summary_text == "The cat sat"
    assert modelwatch_capture.metric_count(DURATION, {"modelwatch.task": "summarization"}) == 1
    assert modelwatch_capture.metric_count(DURATION, {"modelwatch.task": "translation"}) == 1
    assert modelwatch_capture.find_spans("text_completion t5-small")


def test_feature_extraction_is_an_embeddings_call(
    instrumented: None, modelwatch_capture: Captured
) -> None:
    pytest.importorskip("numpy", reason="huggingface_hub needs numpy for feature_extraction")
    model = "BAAI/bge-small-en-v1.5"
    with FakeModelServer(models={model: "feature-extraction"}) as server, InferenceClient() as c:
        vector = c.feature_extraction("embed me", model=server.model_url(model))
    assert vector.shape[-1] == 8
    a = attrs(modelwatch_capture, f"embeddings {model}")
    assert a["gen_ai.operation.name"] == "embeddings"
    assert modelwatch_capture.metric_count(DURATION, {"gen_ai.request.model": model}) == 1


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("loading", "unavailable"),
        ("rate_limit", "rate_limited"),
        ("server_error", "unavailable"),
        ("auth", "auth"),
        ("not_found", "not_found"),
        ("bad_request", "bad_request"),
    ],
)
def test_http_errors_pass_through_and_are_classified(
    client: InferenceClient,
    fake_server: FakeModelServer,
    modelwatch_capture: Captured,
    fault: Any,
    kind: str,
) -> None:
    fake_server.fail(FLAN, fault, times=1)
    with pytest.raises(HfHubHTTPError) as info:
        client.text_generation("will fail")
    span = modelwatch_capture.span(f"text_completion {FLAN}")
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == kind
    [event] = [e for e in span.events if e.name == "exception"]
    assert (event.attributes or {})["exception.type"] == (
        f"{type(info.value).__module__}.{type(info.value).__qualname__}"
    )
    assert modelwatch_capture.metric_count(DURATION, {"error.type": kind}) == 1
    # the client works again once the fault is spent
    assert client.text_generation("ok now") == f"[{FLAN}] ok now"


def test_connection_reset_is_unavailable(
    client: InferenceClient, fake_server: FakeModelServer, modelwatch_capture: Captured
) -> None:
    fake_server.fail(FLAN, "reset", times=1)
    with pytest.raises(Exception):
        client.text_generation("reset me")
    assert attrs(modelwatch_capture, f"text_completion {FLAN}")["error.type"] == "unavailable"


# --------------------------------------------------------------------------- sync streams


def test_text_generation_stream_times_first_chunk_and_ends_at_exhaustion(
    client: InferenceClient, modelwatch_capture: Captured
) -> None:
    stream = client.text_generation("one two three", stream=True, details=True)
    # the request was made, but the call is not current in the consumer's loop
    assert modelwatch.current_call() is None
    assert modelwatch_capture.find_spans(f"text_completion {FLAN}") == []
    chunks = list(stream)
    assert "".join(c.token.text for c in chunks) == f"[{FLAN}] one two three"
    span = modelwatch_capture.span(f"text_completion {FLAN}")
    assert [e.name for e in span.events] == ["gen_ai.first_chunk"]
    a = dict(span.attributes or {})
    assert a["gen_ai.usage.output_tokens"] == chunks[-1].details.generated_tokens
    assert "modelwatch.stream" not in a
    assert modelwatch_capture.metric_count(TTFC) == 1
    assert modelwatch_capture.metric_count(DURATION) == 1


def test_chat_stream_with_include_usage(
    client: InferenceClient, modelwatch_capture: Captured
) -> None:
    stream = client.chat_completion(
        [{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == f"[{FLAN}] stream me please"
    a = attrs(modelwatch_capture, f"chat {FLAN}")
    assert a["gen_ai.usage.input_tokens"] > 0
    assert a["gen_ai.usage.output_tokens"] == 4
    assert a["gen_ai.response.model"] == FLAN


def test_stream_broken_early_ends_once_marked_as_cut(
    client: InferenceClient, modelwatch_capture: Captured
) -> None:
    for _ in client.text_generation("a b c d e f", stream=True):
        break
    gc.collect()
    span = modelwatch_capture.span(f"text_completion {FLAN}")
    assert (span.attributes or {})["modelwatch.stream"] is True
    assert span.status.status_code is StatusCode.UNSET
    assert modelwatch_capture.metric_count(DURATION) == 1


def test_stream_close_ends_the_call_and_closes_the_client_stream(
    client: InferenceClient, modelwatch_capture: Captured
) -> None:
    stream = client.text_generation("a b c d", stream=True)
    assert next(stream) == f"[{FLAN}]"
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)  # the underlying generator is closed too
    assert (attrs(modelwatch_capture, f"text_completion {FLAN}"))["modelwatch.stream"] is True
    assert modelwatch_capture.metric_count(DURATION) == 1


def test_stream_dropped_unconsumed_is_ended_by_garbage_collection(
    client: InferenceClient, modelwatch_capture: Captured
) -> None:
    stream = client.text_generation("never read", stream=True)
    del stream
    gc.collect()
    assert (attrs(modelwatch_capture, f"text_completion {FLAN}"))["modelwatch.stream"] is True
    assert modelwatch_capture.metric_count(DURATION) == 1


def test_stream_cut_mid_way_is_an_error_after_chunks(
    client: InferenceClient, fake_server: FakeModelServer, modelwatch_capture: Captured
) -> None:
    fake_server.fail(FLAN, "cut_stream", after=2, times=1)
    got: list[str] = []
    with pytest.raises(Exception):
        for token in client.text_generation("a b c d e f g", stream=True):
            got.append(token)
    assert len(got) == 2
    span = modelwatch_capture.span(f"text_completion {FLAN}")
    assert span.status.status_code is StatusCode.ERROR
    assert "gen_ai.first_chunk" in [e.name for e in span.events]
    assert modelwatch_capture.metric_count(DURATION, {"error.type": "unavailable"}) == 1


def test_stream_request_error_raises_at_call_time(
    client: InferenceClient, fake_server: FakeModelServer, modelwatch_capture: Captured
) -> None:
    fake_server.fail(FLAN, "loading", times=1)
    with pytest.raises(HfHubHTTPError):
        client.text_generation("x", stream=True)
    assert modelwatch_capture.metric_count(DURATION, {"error.type": "unavailable"}) == 1
    assert modelwatch_capture.metric_count(TTFC) == 0


# --------------------------------------------------------------------------- async


async def test_async_text_generation_and_chat(
    aclient: AsyncInferenceClient, modelwatch_capture: Captured
) -> None:
    text = await aclient.text_generation("async hello")
    chat = await aclient.chat_completion([{"role": "user", "content": "async chat"}])
    assert text == f"[{FLAN}] async hello"
    assert chat.usage is not None
    assert (
        modelwatch_capture.metric_count(DURATION, {"gen_ai.operation.name": "text_completion"}) == 1
    )
    a = attrs(modelwatch_capture, f"chat {FLAN}")
    assert a["gen_ai.usage.output_tokens"] == chat.usage.completion_tokens


async def test_async_stream_and_early_aclose(
    aclient: AsyncInferenceClient, modelwatch_capture: Captured
) -> None:
    stream = await aclient.text_generation("x y z", stream=True)
    assert modelwatch.current_call() is None
    tokens = [t async for t in stream]
    assert "".join(tokens) == f"[{FLAN}] x y z"
    assert modelwatch_capture.metric_count(TTFC) == 1

    stream = await aclient.chat_completion([{"role": "user", "content": "a b c d"}], stream=True)
    async for _ in stream:
        break
    await stream.aclose()
    chat = attrs(modelwatch_capture, f"chat {FLAN}")
    assert chat["modelwatch.stream"] is True
    assert modelwatch_capture.metric_count(DURATION) == 2


async def test_async_error_is_classified(
    aclient: AsyncInferenceClient, fake_server: FakeModelServer, modelwatch_capture: Captured
) -> None:
    fake_server.fail(FLAN, "rate_limit", times=1)
    with pytest.raises(HfHubHTTPError):
        await aclient.text_generation("too many")
    assert modelwatch_capture.metric_count(DURATION, {"error.type": "rate_limited"}) == 1


# --------------------------------------------------------------------------- nesting


def test_nested_in_monitored_of_the_same_model_counts_once(
    client: InferenceClient, modelwatch_capture: Captured
) -> None:
    @modelwatch.monitored(
        model=FLAN, provider="huggingface", operation="text_generation", analysis="code_review"
    )
    def review(code: str) -> str:
        out = client.text_generation(code, details=True)
        return out.generated_text

    assert review("x = 1") == f"[{FLAN}] x = 1"
    spans = modelwatch_capture.find_spans(f"text_completion {FLAN}")
    assert len(spans) == 2
    inner, outer = spans  # the inner one ends first
    assert inner.parent is not None
    assert outer.context is not None
    assert inner.parent.span_id == outer.context.span_id
    # one logical call: one duration point, tokens once, on the outer call's attributes
    assert modelwatch_capture.metric_count(DURATION) == 1
    assert modelwatch_capture.metric_count(DURATION, {"modelwatch.analysis": "code_review"}) == 1
    assert modelwatch_capture.metric_sum(TOKENS, {"gen_ai.token.type": "output"}) == 4
    assert (outer.attributes or {})["gen_ai.usage.output_tokens"] == 4


def test_nested_in_monitored_of_another_model_counts_both(
    client: InferenceClient, modelwatch_capture: Captured
) -> None:
    with modelwatch.monitored(model="router-wrapper", provider="internal"):
        client.text_generation("x")
    assert modelwatch_capture.metric_count(DURATION) == 2


def test_calls_inside_an_agent_step_are_its_children(
    client: InferenceClient, modelwatch_capture: Captured
) -> None:
    with modelwatch.agent_step("reviewer"):
        client.text_generation("child")
    agent = modelwatch_capture.span("invoke_agent reviewer")
    model = modelwatch_capture.span(f"text_completion {FLAN}")
    assert model.parent is not None
    assert agent.context is not None
    assert model.parent.span_id == agent.context.span_id


# --------------------------------------------------------------------------- host safety


def test_a_failure_inside_modelwatch_never_breaks_the_call(
    client: InferenceClient, modelwatch_capture: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelwatch.integrations import huggingface as hf

    def broken(*args: Any) -> Any:
        raise RuntimeError("resolution bug")

    monkeypatch.setattr(hf, "resolve", broken)
    assert client.text_generation("still works") == f"[{FLAN}] still works"
    assert "".join(client.text_generation("stream too", stream=True)) == f"[{FLAN}] stream too"
    assert modelwatch_capture.spans == []  # telemetry lost, the call not


def test_uninstrument_leaves_a_later_wrapper_in_place() -> None:
    import wrapt

    original = InferenceClient.__dict__["summarization"]
    original_generation = InferenceClient.__dict__["text_generation"]
    modelwatch.huggingface.instrument()
    ours = InferenceClient.__dict__["summarization"]
    theirs = wrapt.FunctionWrapper(ours, lambda w, i, a, k: w(*a, **k))
    InferenceClient.summarization = theirs  # type: ignore[method-assign]
    try:
        modelwatch.huggingface.uninstrument()
        assert InferenceClient.__dict__["summarization"] is theirs
        assert InferenceClient.__dict__["text_generation"] is original_generation
    finally:
        InferenceClient.summarization = original  # type: ignore[method-assign]
    assert not modelwatch.huggingface.is_instrumented()


# --------------------------------------------------------------------------- conventions


def test_request_settings_response_and_content_when_capture_is_on(
    client: InferenceClient, modelwatch_capture: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelwatch.capture import _settings

    monkeypatch.setattr(_settings, "capture_content", True)
    out = client.chat_completion(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
        temperature=0.3,
        max_tokens=20,
        seed=1,
        stop=["END"],
    )
    a = attrs(modelwatch_capture, f"chat {FLAN}")
    assert a["gen_ai.request.temperature"] == 0.3
    assert a["gen_ai.request.max_tokens"] == 20
    assert a["gen_ai.request.seed"] == 1
    assert a["gen_ai.request.stop_sequences"] == ("END",)
    assert a["gen_ai.response.id"] == out.id
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert json.loads(a["gen_ai.system_instructions"]) == [{"type": "text", "content": "be brief"}]
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "hello there"}]}
    ]
    output = json.loads(a["gen_ai.output.messages"])
    assert output[0]["parts"][0]["content"] == out.choices[0].message.content


def test_text_generation_content_and_stream_input_tokens(
    client: InferenceClient, modelwatch_capture: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelwatch.capture import _settings

    monkeypatch.setattr(_settings, "capture_content", True)
    client.text_generation("one two three", max_new_tokens=10, details=True)
    streamed = list(client.text_generation("four five", stream=True, details=True))
    spans = modelwatch_capture.find_spans(f"text_completion {FLAN}")
    assert len(spans) == 2
    first, stream_span = dict(spans[0].attributes or {}), dict(spans[-1].attributes or {})
    assert first["gen_ai.request.max_tokens"] == 10
    assert first["gen_ai.response.finish_reasons"] == ("stop",)
    assert json.loads(first["gen_ai.input.messages"])[0]["parts"][0]["content"] == "one two three"
    assert json.loads(first["gen_ai.output.messages"])[0]["role"] == "assistant"
    assert stream_span["gen_ai.request.stream"] is True
    assert stream_span["gen_ai.usage.input_tokens"] == streamed[-1].details.input_length
    assert json.loads(stream_span["gen_ai.output.messages"])[0]["parts"][0]["content"]


async def test_async_content_capture(
    aclient: AsyncInferenceClient, modelwatch_capture: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelwatch.capture import _settings

    monkeypatch.setattr(_settings, "capture_content", True)
    await aclient.text_generation("one two three", temperature=0.5)
    a = attrs(modelwatch_capture, f"text_completion {FLAN}")
    assert a["gen_ai.request.temperature"] == 0.5
    assert json.loads(a["gen_ai.output.messages"])[0]["parts"][0]["content"].endswith("three")


def test_no_content_without_capture(client: InferenceClient, modelwatch_capture: Captured) -> None:
    client.text_generation("private words")
    assert "gen_ai.input.messages" not in attrs(modelwatch_capture, f"text_completion {FLAN}")
