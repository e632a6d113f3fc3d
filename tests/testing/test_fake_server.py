"""FakeModelServer against real clients: huggingface_hub and openai (sync, async), httpx.

Every task, streaming, and each fault as the client sees it. No sleeps: hangs are exercised
with short client timeouts, delays with a few hundred milliseconds at most.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import Any, TypeVar

import httpx
import httpx2
import openai
import pytest
from huggingface_hub import AsyncInferenceClient, InferenceClient
from huggingface_hub.errors import (
    BadRequestError,
    HfHubHTTPError,
    InferenceTimeoutError,
    ValidationError,
)
from openai.types.chat import ChatCompletionChunk

from modelwatch.testing.fake_server import FAULTS, FakeModelServer

T5 = "google/flan-t5-large"
BART = "facebook/bart-large-cnn"
GPT = "gpt-4o-mini"
# Any: the same list goes to openai (TypedDicts) and huggingface_hub (dicts).
MESSAGES: Any = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello big world"},
]


@pytest.fixture
def oai(fake_server: FakeModelServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake_server.openai_base_url, api_key="sk-test", max_retries=0) as c:
        yield c


@pytest.fixture
async def aoai(fake_server: FakeModelServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=fake_server.openai_base_url, api_key="sk-test", max_retries=0
    ) as client:
        yield client


@pytest.fixture
def hf(fake_server: FakeModelServer) -> InferenceClient:
    return InferenceClient(model=fake_server.model_url(T5), timeout=5)


@pytest.fixture
async def ahf(fake_server: FakeModelServer) -> AsyncIterator[AsyncInferenceClient]:
    async with AsyncInferenceClient(model=fake_server.model_url(T5), timeout=5) as client:
        yield client


T = TypeVar("T")


async def _drain(stream: AsyncIterable[T], into: list[T]) -> None:
    async for item in stream:
        into.append(item)


def _fake_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("modelwatch-fake")]


# -- lifecycle ----------------------------------------------------------------------------------


def test_start_is_fast_and_stop_leaves_no_thread_or_socket() -> None:
    started = time.perf_counter()
    server = FakeModelServer().start()
    assert time.perf_counter() - started < 0.5
    assert server.url.startswith("http://127.0.0.1:")
    assert server.running
    httpd = server._httpd  # white box: the sockets and threads the server tracks
    assert httpd is not None
    url = server.url
    # an idle keep-alive connection, plus a request hung forever whose client stays connected
    # (a client that leaves ends its hang: the handler notices within a poll, so the hung
    # request is sent on a raw socket kept open, not by a client that times out and closes)
    server.fail(T5, "hang")
    port = int(url.rsplit(":", 1)[1])
    with httpx.Client() as client, socket.create_connection(("127.0.0.1", port)) as hung:
        assert client.get(f"{url}/health").json() == {"status": "ok"}
        body = b'{"inputs": "x"}'
        hung.sendall(
            f"POST /models/{T5} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        deadline = time.monotonic() + 5.0
        while server.request_count(T5) == 0 and time.monotonic() < deadline:
            time.sleep(0.005)  # wait until the request is in
        assert len(httpd.live_threads()) == 2  # the keep-alive handler and the hung one
        stopping = time.perf_counter()
        server.stop()
        assert time.perf_counter() - stopping < 0.5
    assert not server.running
    assert _fake_threads() == []
    assert httpd.live_threads() == []
    assert httpd.socket.fileno() == -1  # the listening socket is closed
    with pytest.raises(httpx.ConnectError):  # and nothing answers on its port any more
        httpx.get(f"{url}/health")
    server.stop()  # twice is harmless
    with pytest.raises(RuntimeError):
        server.start()


def test_stop_releases_a_hang_whose_client_is_still_waiting() -> None:
    server = FakeModelServer().start()
    server.fail(T5, "hang")
    errors: list[BaseException] = []

    def call() -> None:
        try:
            httpx.post(server.model_url(T5), json={"inputs": "x"}, timeout=10)
        except httpx.HTTPError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    while server.request_count(T5) == 0:
        time.sleep(0.005)  # wait until the request is in
    started = time.perf_counter()
    server.stop()
    caller.join(5)
    assert time.perf_counter() - started < 1.0
    assert len(errors) == 1
    assert isinstance(errors[0], httpx.RemoteProtocolError)
    assert server.requests(T5)[0].status is None


async def test_async_with() -> None:
    async with FakeModelServer() as server:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{server.url}/health")
    assert response.status_code == 200
    assert _fake_threads() == []


def test_repr_and_port_when_stopped() -> None:
    server = FakeModelServer()
    assert "stopped" in repr(server)
    with pytest.raises(RuntimeError):
        _ = server.port


# -- Hugging Face, sync -------------------------------------------------------------------------


def test_hf_text_generation(hf: InferenceClient) -> None:
    assert hf.text_generation("Hello there friend") == f"[{T5}] Hello there friend"
    assert hf.text_generation("one two three four", max_new_tokens=2) == f"[{T5}] one"


def test_hf_text_generation_details(hf: InferenceClient) -> None:
    out = hf.text_generation("Hello there friend", details=True, max_new_tokens=3)
    assert out.generated_text == f"[{T5}] Hello there"
    assert out.details is not None
    assert out.details.finish_reason == "length"
    assert out.details.generated_tokens == 3
    assert [t.text for t in out.details.tokens] == [f"[{T5}]", " Hello", " there"]


def test_hf_text_generation_return_full_text(hf: InferenceClient) -> None:
    assert hf.text_generation("Hi", return_full_text=True) == f"Hi[{T5}] Hi"


def test_hf_text_generation_stream(hf: InferenceClient) -> None:
    assert list(hf.text_generation("a b c", stream=True)) == [f"[{T5}]", " a", " b", " c"]
    events = list(hf.text_generation("a b c", stream=True, details=True))
    assert [e.token.text for e in events] == [f"[{T5}]", " a", " b", " c"]
    last = events[-1]
    assert last.generated_text == f"[{T5}] a b c"
    assert last.details is not None
    assert (last.details.generated_tokens, last.details.input_length) == (4, 3)
    assert all(e.details is None for e in events[:-1])


def test_hf_summarization(fake_server: FakeModelServer) -> None:
    client = InferenceClient(model=fake_server.model_url(BART))
    out = client.summarization("The tower is 324 metres tall. It is in Paris.")
    assert out.summary_text == "The tower is 324 metres tall"
    assert fake_server.requests(BART)[0].task == "summarization"


def test_hf_text2text_and_registered_task(hf: InferenceClient) -> None:
    server = FakeModelServer(models={"my/summarizer": "summarization", T5: None})
    with server:
        with httpx.Client() as client:
            r = client.post(server.model_url(T5), json={"inputs": "translate this"})
            assert r.json() == [{"generated_text": f"[{T5}] translate this"}]
            r = client.post(server.model_url("my/summarizer"), json={"inputs": "A b. C d."})
            assert r.json() == [{"summary_text": "A b"}]
            r = client.post(server.model_url("other/model"), json={"inputs": "x"})
            assert r.status_code == 404
            server.add_model("other/model", task="translation")
            r = client.post(server.model_url("other/model"), json={"inputs": "x y"})
            assert r.json() == [{"translation_text": "y x"}]


def test_hf_translation(fake_server: FakeModelServer) -> None:
    client = InferenceClient(model=fake_server.model_url("Helsinki-NLP/opus-mt-en-fr"))
    assert client.translation("good morning").translation_text == "morning good"


def test_hf_feature_extraction(fake_server: FakeModelServer) -> None:
    model = "sentence-transformers/all-MiniLM-L6-v2"
    client = InferenceClient(model=fake_server.model_url(model))
    try:
        import numpy  # noqa: F401
    except ImportError:  # numpy is the client's optional dependency: the request still happens
        with pytest.raises(ImportError):
            client.feature_extraction("hello", normalize=True)
    else:
        assert client.feature_extraction("hello", normalize=True).shape == (8,)
    record = fake_server.requests(model)[0]
    assert (record.task, record.status) == ("feature-extraction", 200)
    with httpx.Client() as http:
        url = f"{fake_server.model_url(model)}/pipeline/feature-extraction"
        one = http.post(url, json={"inputs": "hello"}).json()
        two = http.post(url, json={"inputs": ["hello", "bye"]}).json()
    assert len(one) == 8
    assert all(-1 <= x <= 1 for x in one)
    assert two[0] == one
    assert two[1] != one


def test_hf_chat_completion(hf: InferenceClient) -> None:
    out = hf.chat_completion(MESSAGES, max_tokens=3)
    assert out.choices[0].message.content == f"[{T5}] hello big"
    assert out.choices[0].finish_reason == "length"
    assert out.model == T5
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (2 + 3 + 3 + 3, 3)


def test_hf_chat_completion_stream(hf: InferenceClient) -> None:
    chunks = list(hf.chat_completion(MESSAGES, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"[{T5}] hello big world"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_hf_chat_completion_with_base_url(fake_server: FakeModelServer) -> None:
    client = InferenceClient(base_url=fake_server.openai_base_url)
    out = client.chat_completion(MESSAGES, model=GPT)
    assert out.model == GPT
    assert fake_server.requests(GPT)[0].path == "/v1/chat/completions"


def test_hf_health_and_info(fake_server: FakeModelServer) -> None:
    hf = InferenceClient(model=fake_server.model_url(T5), provider="hf-inference")
    assert hf.health_check()
    assert hf.get_endpoint_info()["model_id"] == T5
    fake_server.fail(T5, "loading")
    assert not hf.health_check()


# -- Hugging Face, async ------------------------------------------------------------------------


async def test_hf_async_tasks(ahf: AsyncInferenceClient, fake_server: FakeModelServer) -> None:
    assert await ahf.text_generation("Hello there") == f"[{T5}] Hello there"
    tokens = [t async for t in await ahf.text_generation("a b", stream=True)]
    assert tokens == [f"[{T5}]", " a", " b"]
    chat = await ahf.chat_completion(MESSAGES)
    assert chat.usage.total_tokens == 11 + 4
    stream = await ahf.chat_completion(MESSAGES, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream]).endswith("world")
    summary = await ahf.summarization("One two. Three.", model=fake_server.model_url(BART))
    assert summary.summary_text == "One two"


async def test_hf_async_faults(ahf: AsyncInferenceClient, fake_server: FakeModelServer) -> None:
    fake_server.fail(T5, "loading", times=1, estimated_time=7.5)
    with pytest.raises(HfHubHTTPError) as info:
        await ahf.text_generation("x")
    assert info.value.response.status_code == 503
    assert info.value.response.json()["estimated_time"] == 7.5
    fake_server.fail(T5, "rate_limit", times=1, retry_after=3)
    with pytest.raises(HfHubHTTPError) as info:
        await ahf.chat_completion(MESSAGES)
    assert info.value.response.status_code == 429
    assert info.value.response.headers["retry-after"] == "3"
    fake_server.fail(T5, "cut_stream", times=1, after=2)
    stream = await ahf.text_generation("a b c d", stream=True)
    got: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError):
        await _drain(stream, got)
    assert got == [f"[{T5}]", " a"]
    fake_server.fail(T5, "hang", times=1)
    async with AsyncInferenceClient(model=fake_server.model_url(T5), timeout=0.1) as short:
        with pytest.raises(InferenceTimeoutError):
            await short.text_generation("x")
    assert await ahf.text_generation("ok") == f"[{T5}] ok"


# -- OpenAI -------------------------------------------------------------------------------------


def test_openai_chat(oai: openai.OpenAI) -> None:
    out = oai.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=10)
    assert out.model == GPT
    assert out.choices[0].message.content == f"[{GPT}] hello big world"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (
        11,
        4,
        15,
    )


def test_openai_chat_stream_with_usage(oai: openai.OpenAI) -> None:
    with oai.chat.completions.create(
        model=GPT,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"[{GPT}] hello big world"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 15


def test_openai_stream_without_usage_has_none(oai: openai.OpenAI) -> None:
    with oai.chat.completions.create(model=GPT, messages=MESSAGES, stream=True) as stream:
        chunks = list(stream)
    assert all(c.usage is None for c in chunks)


def test_openai_models(oai: openai.OpenAI, fake_server: FakeModelServer) -> None:
    oai.chat.completions.create(model=GPT, messages=MESSAGES)
    assert [m.id for m in oai.models.list()] == [GPT]
    restricted = FakeModelServer(models=["a", "b"])
    with restricted, openai.OpenAI(base_url=restricted.openai_base_url, api_key="k") as client:
        assert [m.id for m in client.models.list()] == ["a", "b"]
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="c", messages=MESSAGES)


async def test_openai_async(aoai: openai.AsyncOpenAI, fake_server: FakeModelServer) -> None:
    out = await aoai.chat.completions.create(model=GPT, messages=MESSAGES)
    assert out.usage is not None
    assert out.usage.completion_tokens == 4
    stream = await aoai.chat.completions.create(
        model=GPT,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    async with stream:
        chunks = [c async for c in stream]
    assert chunks[-1].usage is not None
    fake_server.fail(GPT, "cut_stream", times=1, after=2)
    cut = await aoai.chat.completions.create(model=GPT, messages=MESSAGES, stream=True)
    got: list[ChatCompletionChunk] = []
    async with cut:
        with pytest.raises(openai.APIConnectionError):
            await _drain(cut, got)
    assert len(got) == 2
    fake_server.fail(GPT, "rate_limit", times=1, retry_after=0.25)
    with pytest.raises(openai.RateLimitError) as info:
        await aoai.chat.completions.create(model=GPT, messages=MESSAGES)
    assert info.value.response.headers["retry-after-ms"] == "250"


# -- faults as each client sees them --------------------------------------------------------------

OPENAI_ERRORS = [
    ("loading", {}, openai.InternalServerError, 503),
    ("rate_limit", {}, openai.RateLimitError, 429),
    ("server_error", {}, openai.InternalServerError, 500),
    ("server_error", {"status": 502}, openai.InternalServerError, 502),
    ("auth", {}, openai.AuthenticationError, 401),
    ("auth", {"status": 403}, openai.PermissionDeniedError, 403),
    ("not_found", {}, openai.NotFoundError, 404),
    ("bad_request", {}, openai.BadRequestError, 400),
    ("bad_request", {"status": 422}, openai.UnprocessableEntityError, 422),
]


@pytest.mark.parametrize(("fault", "params", "error", "status"), OPENAI_ERRORS)
@pytest.mark.parametrize("stream", [False, True])
def test_openai_http_faults(
    oai: openai.OpenAI,
    fake_server: FakeModelServer,
    fault: str,
    params: dict[str, int],
    error: type[openai.APIStatusError],
    status: int,
    stream: bool,
) -> None:
    fake_server.fail(GPT, fault, times=1, **params)
    with pytest.raises(error) as info:
        oai.chat.completions.create(model=GPT, messages=MESSAGES, stream=stream)  # type: ignore[call-overload]
    assert info.value.status_code == status
    assert isinstance(info.value.body, dict)
    assert info.value.body["message"]
    # times=1: the next call works
    assert oai.chat.completions.create(model=GPT, messages=MESSAGES).model == GPT
    assert [r.status for r in fake_server.requests(GPT)] == [status, 200]
    assert fake_server.requests(GPT)[0].fault == fault


HF_ERRORS = [
    ("loading", {}, HfHubHTTPError, 503),
    ("rate_limit", {}, HfHubHTTPError, 429),
    ("server_error", {"status": 504}, HfHubHTTPError, 504),
    ("auth", {}, HfHubHTTPError, 401),
    ("not_found", {}, HfHubHTTPError, 404),
    ("bad_request", {}, BadRequestError, 400),
]


@pytest.mark.parametrize(("fault", "params", "error", "status"), HF_ERRORS)
def test_hf_http_faults(
    hf: InferenceClient,
    fake_server: FakeModelServer,
    fault: str,
    params: dict[str, int],
    error: type[HfHubHTTPError],
    status: int,
) -> None:
    fake_server.fail(T5, fault, times=1, **params)
    with pytest.raises(error) as info:
        hf.text_generation("some text")
    assert info.value.response.status_code == status
    assert hf.text_generation("some text") == f"[{T5}] some text"


def test_hf_loading_body_and_message(hf: InferenceClient, fake_server: FakeModelServer) -> None:
    fake_server.fail(T5, "loading", estimated_time=12.0)
    with pytest.raises(HfHubHTTPError) as info:
        hf.text_generation("x")
    assert "is currently loading" in str(info.value)
    assert info.value.response.json() == {
        "error": f"Model {T5} is currently loading",
        "estimated_time": 12.0,
    }
    fake_server.heal(T5)
    assert hf.text_generation("x") == f"[{T5}] x"


def test_hf_text_generation_422_is_tgi_validation_error(
    hf: InferenceClient, fake_server: FakeModelServer
) -> None:
    message = "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096"
    fake_server.fail(T5, "bad_request", status=422, message=message, times=1)
    with pytest.raises(ValidationError, match="must be <= 4096") as info:
        hf.text_generation("x", max_new_tokens=5)  # a TGI parameter: the fake answers as TGI
    assert isinstance(info.value.__cause__, HfHubHTTPError)


def test_rate_limit_headers(oai: openai.OpenAI, fake_server: FakeModelServer) -> None:
    fake_server.fail(GPT, "rate_limit", retry_after=2.5, times=1)
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(model=GPT, messages=MESSAGES)
    headers = info.value.response.headers
    assert headers["retry-after"] == "3"
    assert headers["retry-after-ms"] == "2500"
    assert headers["x-ratelimit-limit-requests"] == "100"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]


def test_quota_headers_count_down_then_429(
    oai: openai.OpenAI, fake_server: FakeModelServer
) -> None:
    fake_server.set_rate_limit(GPT, requests=2, tokens=1000, reset_s=7)
    raw = oai.chat.completions.with_raw_response.create(model=GPT, messages=MESSAGES)
    assert raw.headers["x-ratelimit-limit-requests"] == "2"
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"
    assert raw.headers["x-ratelimit-remaining-tokens"] == "1000"  # spent after the answer
    raw = oai.chat.completions.with_raw_response.create(model=GPT, messages=MESSAGES)
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    assert raw.headers["x-ratelimit-remaining-tokens"] == "985"
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(model=GPT, messages=MESSAGES)
    assert info.value.response.headers["retry-after"] == "7"
    assert fake_server.requests(GPT)[-1].fault == "rate_limit"
    fake_server.heal(GPT)
    raw = oai.chat.completions.with_raw_response.create(model=GPT, messages=MESSAGES)
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"
    fake_server.set_rate_limit(GPT)
    raw = oai.chat.completions.with_raw_response.create(model=GPT, messages=MESSAGES)
    assert "x-ratelimit-limit-requests" not in raw.headers


def test_hang_times_out_each_client(fake_server: FakeModelServer) -> None:
    fake_server.fail(GPT, "hang")
    fake_server.fail(T5, "hang")
    with openai.OpenAI(
        base_url=fake_server.openai_base_url, api_key="k", max_retries=0, timeout=0.1
    ) as client:
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model=GPT, messages=MESSAGES)
    with pytest.raises(InferenceTimeoutError):
        InferenceClient(model=fake_server.model_url(T5), timeout=0.1).text_generation("x")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(fake_server.model_url(T5), json={"inputs": "x"}, timeout=0.1)


def test_heal_lets_a_hung_request_answer(fake_server: FakeModelServer) -> None:
    fake_server.fail(T5, "hang")
    result: list[httpx.Response] = []
    caller = threading.Thread(
        target=lambda: result.append(
            httpx.post(fake_server.model_url(T5), json={"inputs": "x"}, timeout=5)
        )
    )
    caller.start()
    while fake_server.request_count(T5) == 0:
        time.sleep(0.005)  # wait until the request is in
    fake_server.heal(T5)
    caller.join(5)
    assert result[0].status_code == 200
    assert fake_server.requests(T5)[0].fault == "hang"


def test_reset_is_a_connection_reset(
    oai: openai.OpenAI, hf: InferenceClient, fake_server: FakeModelServer
) -> None:
    fake_server.fail("*", "reset", times=3)
    with pytest.raises(openai.APIConnectionError) as info:
        oai.chat.completions.create(model=GPT, messages=MESSAGES)
    assert isinstance(info.value.__cause__, httpx2.ReadError)
    with pytest.raises(httpx2.ReadError, match="reset"):
        hf.text_generation("x")
    with pytest.raises(httpx.ReadError):
        httpx.post(fake_server.model_url(T5), json={"inputs": "x"})
    assert hf.text_generation("x") == f"[{T5}] x"
    assert [r.status for r in fake_server.requests()] == [None, None, None, 200]


def test_cut_stream(oai: openai.OpenAI, hf: InferenceClient, fake_server: FakeModelServer) -> None:
    fake_server.fail(GPT, "cut_stream", after=3, times=1)
    got: list[ChatCompletionChunk] = []
    with oai.chat.completions.create(model=GPT, messages=MESSAGES, stream=True) as stream:
        with pytest.raises(openai.APIConnectionError):
            got.extend(stream)
    assert len(got) == 3
    fake_server.fail(T5, "cut_stream", after=1, times=2)
    tokens: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError):
        tokens.extend(hf.text_generation("a b c", stream=True))
    assert tokens == [f"[{T5}]"]
    with pytest.raises(httpx.RemoteProtocolError):  # not streamed: half a body
        httpx.post(fake_server.model_url(T5), json={"inputs": "x"})


def test_slow_first_chunk(oai: openai.OpenAI, fake_server: FakeModelServer) -> None:
    fake_server.fail(GPT, "slow_first_chunk", delay=0.2, times=1)
    started = time.perf_counter()
    with oai.chat.completions.create(model=GPT, messages=MESSAGES, stream=True) as stream:
        headers_at = time.perf_counter() - started
        chunks = list(stream)
    assert time.perf_counter() - started >= 0.2
    assert headers_at < 0.2  # headers come at once; the first chunk is late
    assert len(chunks) > 1


def test_latency(fake_server: FakeModelServer) -> None:
    fake_server.set_latency(T5, 0.15)
    with httpx.Client() as client:
        started = time.perf_counter()
        assert client.post(fake_server.model_url(T5), json={"inputs": "x"}).status_code == 200
        assert time.perf_counter() - started >= 0.15
        fake_server.heal()
        started = time.perf_counter()
        client.post(fake_server.model_url(T5), json={"inputs": "x"})
        assert time.perf_counter() - started < 0.15
    with pytest.raises(ValueError):
        fake_server.set_latency(T5, -1)


def test_fault_queue_any_model_and_log(fake_server: FakeModelServer) -> None:
    fake_server.fail(T5, "loading", times=1)
    fake_server.fail(T5, "rate_limit", times=2)
    fake_server.fail("*", "server_error", times=1)
    with httpx.Client() as client:
        statuses = [
            client.post(fake_server.model_url(T5), json={"inputs": "x"}).status_code
            for _ in range(5)
        ]
        other = client.post(fake_server.model_url(BART), json={"inputs": "x"}).status_code
    assert statuses == [503, 429, 429, 500, 200]
    assert other == 200
    assert fake_server.request_count() == 6
    assert fake_server.request_count(T5) == 5
    assert [r.fault for r in fake_server.requests(T5)] == [
        "loading",
        "rate_limit",
        "rate_limit",
        "server_error",
        None,
    ]
    fake_server.clear_requests()
    assert fake_server.requests() == []


def test_fault_until_healed(hf: InferenceClient, fake_server: FakeModelServer) -> None:
    fake_server.fail(T5, "server_error")
    for _ in range(3):
        with pytest.raises(HfHubHTTPError):
            hf.text_generation("x")
    fake_server.heal()
    assert hf.text_generation("x") == f"[{T5}] x"


def test_extra_headers_on_fault(fake_server: FakeModelServer) -> None:
    fake_server.fail(T5, "server_error", status=503, headers={"Retry-After": "9"}, times=1)
    response = httpx.post(fake_server.model_url(T5), json={"inputs": "x"})
    assert (response.status_code, response.headers["retry-after"]) == (503, "9")


@pytest.mark.parametrize(
    ("fault", "kwargs"),
    [
        ("explode", {}),
        ("server_error", {"status": 404}),
        ("auth", {"status": 500}),
        ("hang", {"status": 500}),
        ("loading", {"times": 0}),
        ("cut_stream", {"after": -1}),
    ],
)
def test_fail_validates(fake_server: FakeModelServer, fault: str, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        fake_server.fail(T5, fault, **kwargs)


def test_faults_listed() -> None:
    assert set(FAULTS) == {
        "loading",
        "rate_limit",
        "server_error",
        "auth",
        "not_found",
        "bad_request",
        "hang",
        "reset",
        "slow_first_chunk",
        "cut_stream",
    }


def test_bad_routes_and_bodies(fake_server: FakeModelServer) -> None:
    with httpx.Client(base_url=fake_server.url) as client:
        assert client.get("/nowhere").status_code == 404
        assert client.post("/models/x", content=b"not json").status_code == 400
        assert client.post("/v1/chat/completions", content=b"[1]").status_code == 400


def test_concurrent_requests(fake_server: FakeModelServer) -> None:
    async def many() -> list[int]:
        async with httpx.AsyncClient() as client:
            responses = await asyncio.gather(
                *(
                    client.post(fake_server.model_url(f"m{i % 3}"), json={"inputs": str(i)})
                    for i in range(30)
                )
            )
        return [r.status_code for r in responses]

    assert asyncio.run(many()) == [200] * 30
    assert fake_server.request_count() == 30
