"""classify() and the retry-hint helpers, on REAL client exceptions produced by FakeModelServer.

Every client (huggingface_hub sync and async, openai sync and async, httpx, requests) is
pointed at the fake server, made to fail in each way, and the exception it raises is
classified. Hangs use 0.1 s client timeouts; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
import requests
import tenacity
from huggingface_hub import AsyncInferenceClient, InferenceClient
from huggingface_hub.errors import HfHubHTTPError, ValidationError

from modelwatch import (
    AllBackendsFailedError,
    Attempt,
    CircuitOpenError,
    StreamInterruptedError,
    classify,
    semconv,
)
from modelwatch._classify import MAX_DEPTH, response_headers, status_code
from modelwatch._retryhints import parse_retry_after, rate_limit_ratios, retry_after_s
from modelwatch.testing.fake_server import FakeModelServer

MODEL = "acme/chat-model"
MESSAGES: Any = [{"role": "user", "content": "hello there"}]
SHORT = 0.1  # client timeout for hangs


# -- producing real exceptions ----------------------------------------------------------------


def _hf(url: str, stream: bool, timeout: float) -> None:
    client = InferenceClient(model=url, timeout=timeout)
    if stream:
        list(client.text_generation("hello there", max_new_tokens=5, stream=True))
    else:
        client.text_generation("hello there", max_new_tokens=5)


def _hf_async(url: str, stream: bool, timeout: float) -> None:
    async def run() -> None:
        async with AsyncInferenceClient(model=url, timeout=timeout) as client:
            if stream:
                tokens = await client.text_generation("hello there", max_new_tokens=5, stream=True)
                _ = [token async for token in tokens]
            else:
                await client.text_generation("hello there", max_new_tokens=5)

    asyncio.run(run())


def _openai_base(url: str) -> str:
    return url.split("/models/", maxsplit=1)[0] + "/v1"


def _openai(url: str, stream: bool, timeout: float) -> None:
    with openai.OpenAI(
        base_url=_openai_base(url), api_key="k", max_retries=0, timeout=timeout
    ) as client:
        if stream:
            with client.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True
            ) as chunks:
                list(chunks)
        else:
            client.chat.completions.create(model=MODEL, messages=MESSAGES)


def _openai_async(url: str, stream: bool, timeout: float) -> None:
    async def run() -> None:
        async with openai.AsyncOpenAI(
            base_url=_openai_base(url), api_key="k", max_retries=0, timeout=timeout
        ) as client:
            if stream:
                chunks = await client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, stream=True
                )
                async with chunks:
                    _ = [chunk async for chunk in chunks]
            else:
                await client.chat.completions.create(model=MODEL, messages=MESSAGES)

    asyncio.run(run())


def _httpx(url: str, stream: bool, timeout: float) -> None:
    payload = {"inputs": "hello there", "parameters": {"max_new_tokens": 5}, "stream": stream}
    with httpx.Client(timeout=timeout) as client:
        if stream:
            with client.stream("POST", url, json=payload) as response:
                response.raise_for_status()
                list(response.iter_lines())
        else:
            client.post(url, json=payload).raise_for_status()


def _requests(url: str, stream: bool, timeout: float) -> None:
    payload = {"inputs": "hello there", "parameters": {"max_new_tokens": 5}, "stream": stream}
    with (
        requests.Session() as session,
        session.post(url, json=payload, timeout=timeout, stream=stream) as response,
    ):
        response.raise_for_status()
        list(response.iter_lines()) if stream else response.json()


CLIENTS: dict[str, Callable[[str, bool, float], None]] = {
    "huggingface_hub": _hf,
    "huggingface_hub_async": _hf_async,
    "openai": _openai,
    "openai_async": _openai_async,
    "httpx": _httpx,
    "requests": _requests,
}


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: str | None  # None: the server is not there at all (connection refused)
    params: dict[str, Any]
    kind: str
    stream: bool = False


SCENARIOS = [
    Scenario("loading", "loading", {}, "unavailable"),
    Scenario("rate_limit", "rate_limit", {}, "rate_limited"),
    Scenario("500", "server_error", {}, "unavailable"),
    Scenario("502", "server_error", {"status": 502}, "unavailable"),
    Scenario("504", "server_error", {"status": 504}, "timeout"),
    Scenario("401", "auth", {}, "auth"),
    Scenario("403", "auth", {"status": 403}, "auth"),
    Scenario("404", "not_found", {}, "not_found"),
    Scenario("400", "bad_request", {}, "bad_request"),
    Scenario("413", "bad_request", {"status": 413}, "bad_request"),
    Scenario("422", "bad_request", {"status": 422}, "bad_request"),
    Scenario(
        "context_length_on_500",
        "server_error",
        {"message": "This model's maximum context length is 4096 tokens."},
        "bad_request",
    ),
    Scenario("hang", "hang", {}, "timeout"),
    Scenario("reset", "reset", {}, "unavailable"),
    Scenario("cut_stream", "cut_stream", {"after": 1}, "unavailable", stream=True),
    Scenario("slow_first_chunk", "slow_first_chunk", {"delay": 1.0}, "timeout", stream=True),
    Scenario("refused", None, {}, "unavailable"),
]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _raise_from(client: str, scenario: Scenario, server: FakeModelServer) -> BaseException:
    if scenario.fault is None:
        url = f"http://127.0.0.1:{_closed_port()}/models/{MODEL}"
    else:
        server.fail(MODEL, scenario.fault, **scenario.params)  # type: ignore[arg-type]
        url = server.model_url(MODEL)
    timeout = SHORT if scenario.fault in ("hang", "slow_first_chunk") else 5.0
    try:
        CLIENTS[client](url, scenario.stream, timeout)
    except Exception as exc:
        return exc
    pytest.fail(f"{client} raised nothing for {scenario.name}")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
@pytest.mark.parametrize("client", list(CLIENTS))
def test_real_client_exceptions(
    fake_server: FakeModelServer, client: str, scenario: Scenario
) -> None:
    exc = _raise_from(client, scenario, fake_server)
    assert classify(exc) == scenario.kind, repr(exc)


def test_hf_422_is_a_tgi_validation_error_classified_through_its_cause(
    fake_server: FakeModelServer,
) -> None:
    fake_server.fail(MODEL, "bad_request", status=422)
    exc = _raise_from(
        "huggingface_hub", Scenario("422", "bad_request", {"status": 422}, ""), fake_server
    )
    assert isinstance(exc, ValidationError)
    assert status_code(exc) is None  # the status is on the cause only
    assert classify(exc) == "bad_request"


def test_every_kind_is_a_declared_kind() -> None:
    assert {s.kind for s in SCENARIOS} | {"cancelled", "_OTHER"} == set(semconv.ERROR_KINDS)


# -- builtins, asyncio, modelwatch's own --------------------------------------------------------


async def _timed_out() -> BaseException:
    try:
        await asyncio.wait_for(asyncio.Event().wait(), timeout=0.001)
    except TimeoutError as exc:
        return exc
    raise AssertionError("no timeout")


async def test_asyncio_errors() -> None:
    assert classify(await _timed_out()) == "timeout"
    task = asyncio.ensure_future(asyncio.Event().wait())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError) as info:
        await task
    assert classify(info.value) == "cancelled"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TimeoutError(), "timeout"),
        (socket.timeout(), "timeout"),  # noqa: UP041 - the alias users still raise
        (concurrent.futures.TimeoutError(), "timeout"),
        (ConnectionRefusedError(), "unavailable"),
        (ConnectionResetError(), "unavailable"),
        (BrokenPipeError(), "unavailable"),
        (ConnectionAbortedError(), "unavailable"),
        (socket.gaierror(-2, "Name or service not known"), "unavailable"),
        (asyncio.CancelledError(), "cancelled"),
        (concurrent.futures.CancelledError(), "cancelled"),
        (CircuitOpenError("flan", retry_after_s=3.0), "unavailable"),
        (StreamInterruptedError("flan", 3, "timeout"), "timeout"),
        (ValueError("nope"), "_OTHER"),
        (KeyError("x"), "_OTHER"),
        (OSError("disk"), "_OTHER"),
        (KeyboardInterrupt(), "_OTHER"),
        (Exception(), "_OTHER"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_plain_exceptions(exc: BaseException, kind: str) -> None:
    assert classify(exc) == kind


def test_all_backends_failed_takes_the_last_attempt() -> None:
    attempts = [
        Attempt("a", "timeout", TimeoutError(), 1.0),
        Attempt("b", "rate_limited", None, 0.1),
    ]
    assert classify(AllBackendsFailedError("r", attempts)) == "rate_limited"
    assert classify(AllBackendsFailedError("r", [])) == "unavailable"


# -- status codes on any exception --------------------------------------------------------------


class _WithStatusCode(Exception):
    def __init__(self, status: object, message: str = "") -> None:
        super().__init__(message)
        self.status_code = status


class _WithStatus(Exception):
    def __init__(self, status: object) -> None:
        super().__init__()
        self.status = status


class _Response:
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.headers = headers or {}


class _WithResponse(Exception):
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__()
        self.response = _Response(status, headers)


STATUS_KINDS = [
    (429, "rate_limited"),
    (408, "timeout"),
    (504, "timeout"),
    (500, "unavailable"),
    (502, "unavailable"),
    (503, "unavailable"),
    (529, "unavailable"),
    (401, "auth"),
    (403, "auth"),
    (402, "auth"),
    (404, "not_found"),
    (410, "not_found"),
    (400, "bad_request"),
    (413, "bad_request"),
    (422, "bad_request"),
    (409, "_OTHER"),
    (418, "_OTHER"),
    (302, "_OTHER"),
]


@pytest.mark.parametrize(("status", "kind"), STATUS_KINDS)
@pytest.mark.parametrize("carrier", [_WithStatusCode, _WithStatus, _WithResponse])
def test_status_codes(carrier: Callable[[int], BaseException], status: int, kind: str) -> None:
    exc = carrier(status)
    assert status_code(exc) == status
    assert classify(exc) == kind


@pytest.mark.parametrize("status", ["429", None, True, 99, 600, 1000, 4.29e2])
def test_not_a_status(status: object) -> None:
    assert status_code(_WithStatusCode(status)) is None
    assert classify(_WithStatusCode(status)) == "_OTHER"


@pytest.mark.parametrize(
    "message",
    [
        "This model's maximum context length is 8192 tokens. However, you requested 9000",
        "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096",
        "prompt is too long: 210000 tokens > 200000 maximum",
        '{"code": "context_length_exceeded"}',
    ],
)
def test_context_length_is_bad_request_whatever_the_status(message: str) -> None:
    assert classify(_WithStatusCode(500, message)) == "bad_request"
    assert classify(_WithStatusCode(429, message)) == "rate_limited"  # a rate limit stays one


def test_httpx_status_error_built_by_hand() -> None:
    request = httpx.Request("POST", "http://x/y")
    response = httpx.Response(503, request=request)
    exc = httpx.HTTPStatusError("boom", request=request, response=response)
    assert classify(exc) == "unavailable"


# -- wrapped exceptions -------------------------------------------------------------------------


def _chain(inner: BaseException, levels: int, *, explicit: bool = True) -> BaseException:
    exc = inner
    for level in range(levels):
        outer = RuntimeError(f"level {level}")
        if explicit:
            outer.__cause__ = exc
        else:
            outer.__context__ = exc
        exc = outer
    return exc


def test_cause_chain_is_walked() -> None:
    assert classify(_chain(httpx.ReadTimeout("t"), 1)) == "timeout"
    assert classify(_chain(ConnectionResetError(), 3, explicit=False)) == "unavailable"
    assert classify(_chain(TimeoutError(), MAX_DEPTH)) == "timeout"
    assert classify(_chain(TimeoutError(), MAX_DEPTH + 1)) == "_OTHER"  # bounded


def test_suppressed_context_is_not_walked() -> None:
    outer = RuntimeError("clean")
    outer.__context__ = TimeoutError()
    outer.__suppress_context__ = True
    assert classify(outer) == "_OTHER"


def test_specific_outer_wins_over_its_cause() -> None:
    outer = _WithStatusCode(404)
    outer.__cause__ = TimeoutError()
    assert classify(outer) == "not_found"


def test_cycles_do_not_loop() -> None:
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__context__, b.__context__ = b, a
    assert classify(a) == "_OTHER"


def test_exception_group() -> None:
    errors = [ValueError("x"), ConnectionRefusedError()]
    group = ExceptionGroup("many", errors)  # noqa: F821 - Python 3.11+, as in the test venv
    assert classify(group) == "unavailable"


def test_tenacity_retry_error() -> None:
    @tenacity.retry(stop=tenacity.stop_after_attempt(2), wait=tenacity.wait_none())
    def always_times_out() -> None:
        raise TimeoutError

    with pytest.raises(tenacity.RetryError) as info:
        always_times_out()
    assert classify(info.value) == "timeout"


# -- never raises -------------------------------------------------------------------------------


class _Hostile(Exception):
    """Every attribute read and str() raise."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("__class__", "__dict__"):
            return object.__getattribute__(self, name)
        raise RuntimeError(f"no {name} for you")

    def __str__(self) -> str:
        raise RuntimeError("no str")


class _HostileResponse(Exception):
    @property
    def response(self) -> Any:
        raise RuntimeError("boom")

    @property
    def status_code(self) -> Any:
        raise ValueError("boom")


def test_never_raises() -> None:
    for weird in (_Hostile(), _HostileResponse(), object(), None, 42):
        assert classify(weird) == "_OTHER"  # type: ignore[arg-type]
        assert status_code(weird) is None  # type: ignore[arg-type]
        assert response_headers(weird) is None  # type: ignore[arg-type]
        assert retry_after_s(weird) is None  # type: ignore[arg-type]


# -- Retry-After --------------------------------------------------------------------------------

NOW = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),  # IMF-fixdate
        ("Wednesday, 21-Oct-15 07:29:00 GMT", 60.0),  # RFC 850
        ("Wed Oct 21 07:28:10 2015", None),  # asctime has no zone: refused, not guessed
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: retry now
        ("-1", None),
        ("inf", None),
        ("nan", None),
        ("soon", None),
        ("", None),
        ("12abc", None),
    ],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_uses_the_clock_by_default() -> None:
    date = email.utils.formatdate(usegmt=True)
    seconds = parse_retry_after(date)
    assert seconds is not None
    assert 0.0 <= seconds <= 1.0


@pytest.mark.parametrize(
    "client", ["openai", "openai_async", "huggingface_hub", "httpx", "requests"]
)
def test_retry_after_from_real_429(fake_server: FakeModelServer, client: str) -> None:
    scenario = Scenario("rate_limit", "rate_limit", {"retry_after": 2.5, "times": 1}, "")
    exc = _raise_from(client, scenario, fake_server)
    assert retry_after_s(exc) == 2.5  # retry-after-ms wins over the rounded Retry-After: 3
    headers = response_headers(exc)
    assert headers is not None
    assert headers["retry-after"] == "3"
    assert rate_limit_ratios(headers)["requests"] == 0.0


def test_retry_after_header_only_in_both_formats() -> None:
    request = httpx.Request("GET", "http://x")
    seconds = httpx.Response(429, headers={"Retry-After": "7"}, request=request)
    exc = httpx.HTTPStatusError("x", request=request, response=seconds)
    assert retry_after_s(exc) == 7.0
    dated = httpx.Response(
        503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:12 GMT"}, request=request
    )
    exc = httpx.HTTPStatusError("x", request=request, response=dated)
    assert retry_after_s(exc, now=NOW) == 12.0
    wrapped = RuntimeError("wrapper")
    wrapped.__cause__ = exc
    assert retry_after_s(wrapped, now=NOW) == 12.0


def test_retry_after_from_hf_loading_body(fake_server: FakeModelServer) -> None:
    scenario = Scenario("loading", "loading", {"estimated_time": 42.5}, "")
    exc = _raise_from("huggingface_hub", scenario, fake_server)
    assert isinstance(exc, HfHubHTTPError)
    assert retry_after_s(exc) == 42.5


def test_retry_after_none_and_own_errors() -> None:
    assert retry_after_s(ValueError()) is None
    assert retry_after_s(_WithResponse(500)) is None
    assert retry_after_s(_WithResponse(429, {"retry-after-ms": "garbage"})) is None
    assert retry_after_s(CircuitOpenError("c", retry_after_s=4.0)) == 4.0
    assert retry_after_s(AllBackendsFailedError("r", [], retry_after_s=1.5)) == 1.5


# -- rate-limit ratios --------------------------------------------------------------------------


def test_rate_limit_ratios() -> None:
    headers = {
        "X-RateLimit-Limit-Requests": "100",
        "x-ratelimit-remaining-requests": "25",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-limit-images": "0",  # zero limit: skipped
        "x-ratelimit-remaining-images": "0",
        "x-ratelimit-remaining-audio": "5",  # no limit: skipped
        "x-ratelimit-limit-video": "10",
        "x-ratelimit-remaining-video": "lots",  # garbage: skipped
        "x-ratelimit-limit-burst": "10",
        "x-ratelimit-remaining-burst": "15",  # more than the limit: clamped
    }
    assert rate_limit_ratios(headers) == {"requests": 0.25, "tokens": 0.0, "burst": 1.0}


def test_rate_limit_ratios_ietf_draft() -> None:
    headers = {
        "RateLimit": '"api";r=50;t=55',
        "RateLimit-Policy": '"fixed window";"api";q=500;w=300',
    }
    assert rate_limit_ratios(headers) == {"api": 0.1}
    assert rate_limit_ratios({}) == {}
    assert rate_limit_ratios({"ratelimit": "nonsense", "ratelimit-policy": "q=0"}) == {}


def test_rate_limit_ratios_from_the_fake_servers_quota(fake_server: FakeModelServer) -> None:
    fake_server.set_rate_limit(MODEL, requests=4, tokens=100)
    with httpx.Client() as client:
        response = client.post(fake_server.model_url(MODEL), json={"inputs": "a b c d"})
    assert rate_limit_ratios(response.headers) == {"requests": 0.75, "tokens": 1.0}


def test_classify_returns_only_declared_kinds() -> None:
    samples: list[BaseException] = [TimeoutError(), ValueError(), _WithStatusCode(429)]
    assert {classify(e) for e in samples} <= set(semconv.ERROR_KINDS)
