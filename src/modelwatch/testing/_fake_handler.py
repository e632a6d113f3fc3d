"""The HTTP side of the fake model server: routing, faults on the wire, JSON and SSE answers.

Routes (``{model}`` may contain slashes, e.g. ``google/flan-t5-large``):

* ``POST /models/{model}`` — Hugging Face Inference API; the task comes from the model's
  registered task, else from the payload (see :func:`_fake_responses.infer_task`).
* ``POST /models/{model}/pipeline/{task}`` — the same, with the task in the path.
* ``POST /models/{model}/v1/chat/completions`` — TGI's OpenAI-compatible chat route, as
  ``InferenceClient(model=url).chat_completion`` calls it.
* ``GET /models/{model}/info``, ``GET /models/{model}/health`` — TGI endpoint info and health.
* ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` (model in the body),
  ``GET /v1/models`` — OpenAI compatible.
* ``GET /health`` — the server itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import select
import socket
import struct
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from modelwatch.testing import _fake_responses as responses
from modelwatch.testing._fake_state import Fault, RequestRecord, State

#: How often a hung request checks whether its client went away.
_HANG_POLL_S: Final = 0.05
_CHAT_SUFFIX: Final = "/v1/chat/completions"


@dataclass(frozen=True)
class Route:
    """What a request path asks for."""

    api: str  # "hf" or "openai": decides the shape of error bodies
    kind: str  # "infer", "chat", "info", "health", "models", "server_health"
    model: str | None
    task: str | None = None


def parse_route(method: str, raw_path: str) -> Route | None:
    """Map a request line to a :class:`Route`, or ``None`` if nothing lives there."""
    path = unquote(urlsplit(raw_path).path).rstrip("/") or "/"
    if path == "/health" and method == "GET":
        return Route("hf", "server_health", None)
    if path in ("/v1/models", "/models") and method == "GET":  # "*" faults apply here
        return Route("openai", "models", None)
    if path in ("/v1/chat/completions", "/chat/completions") and method == "POST":
        return Route("openai", "chat", None, "conversational")
    if path in ("/v1/completions", "/v1/embeddings") and method == "POST":
        return Route("openai", path[len("/v1/") :], None)
    if not path.startswith("/models/"):
        return None
    rest = path[len("/models/") :]
    if method == "POST" and rest.endswith(_CHAT_SUFFIX):
        return Route("hf", "chat", rest[: -len(_CHAT_SUFFIX)], "conversational")
    if method == "GET":
        for suffix in ("info", "health"):
            if rest.endswith(f"/{suffix}"):
                return Route("hf", suffix, rest[: -len(suffix) - 1])
        return None
    if method != "POST":
        return None
    model, sep, task = rest.partition("/pipeline/")
    if sep and task in responses.TASKS:
        return Route("hf", "infer", model, task)
    return Route("hf", "infer", rest)


#: OpenAI-style route kind -> (generation, whole answer, streamed chunks)
_OPENAI_GENERATIONS: Final[dict[str, tuple[Any, Any, Any]]] = {
    "chat": (responses.chat_generation, responses.chat_completion, responses.chat_chunks),
    "completions": (
        responses.completion_generation,
        responses.completion,
        responses.completion_chunks,
    ),
}


class FakeHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that tracks its handler threads and open connections."""

    daemon_threads = True
    request_queue_size = 128  # bursts of concurrent clients must not overflow the backlog

    def __init__(self, address: tuple[str, int], state: State) -> None:
        self.state = state
        self.threads: set[threading.Thread] = set()
        self.connections: set[socket.socket] = set()
        self.tracking = threading.Lock()
        super().__init__(address, FakeHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve each connection on its own tracked thread."""
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"modelwatch-fake-conn-{client_address[1]}",
            daemon=True,
        )
        with self.tracking:
            self.threads.add(thread)
            self.connections.add(request)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self.tracking:
                self.threads.discard(threading.current_thread())
                self.connections.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that vanish mid-answer are normal here: stay quiet."""

    def close_connections(self) -> None:
        """Shut every open connection so idle keep-alive handlers return at once."""
        with self.tracking:
            connections = list(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def live_threads(self) -> list[threading.Thread]:
        """Handler threads still running."""
        with self.tracking:
            return list(self.threads)


class _AbortedError(Exception):
    """The answer was cut short on purpose (reset, cut, stop): send nothing more."""


class FakeHandler(BaseHTTPRequestHandler):
    """Answers one connection's requests (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "modelwatch-fake/1"
    # headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK hold every keep-alive answer back ~40 ms
    disable_nagle_algorithm = True
    server: FakeHTTPServer
    # what the current request's log entry says; reset for each request
    _index: int = -1
    _status: int | None = None
    _fault: str | None = None
    _task: str | None = None

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line of :mod:`http.server`."""

    def do_GET(self) -> None:
        """Serve a GET."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Serve a POST."""
        self._dispatch("POST")

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The server's shared state."""
        return self.server.state

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        route = parse_route(method, self.path)
        if route is None:
            self._index = self.state.begin(RequestRecord(None, method, self.path, None, False))
            self._status, self._fault, self._task = None, None, None
            self._send_json(404, {"error": f"no route for {method} {self.path}"}, {})
            return
        try:
            loaded = json.loads(body) if body else {}
        except ValueError:
            loaded = None
        payload: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
        model = route.model
        if route.kind in ("chat", "completions", "embeddings") and model is None:
            model = str(payload.get("model") or "unknown")
        self._index = index = self.state.begin(
            RequestRecord(model, method, self.path, route.task, bool(payload.get("stream")))
        )
        self._status, self._fault, self._task = None, None, route.task
        try:
            if loaded is None or (body and not isinstance(loaded, dict)):
                self._error(
                    route, model=model, status=400, message="request body is not a JSON object"
                )
            else:
                self._serve(route, model, payload)
        except _AbortedError:
            self.close_connection = True
        except OSError:  # the client went away mid-answer
            self.close_connection = True
        finally:
            self.state.finish(index, self._status, self._fault, self._task)

    def _wait(self, seconds: float) -> None:
        """Wait ``seconds``, or abort at once if the server stops."""
        if seconds > 0 and self.state.stopping.wait(seconds):
            raise _AbortedError

    def _peer_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            return peeked == b""
        except OSError:
            return True

    def _hang(self, model: str | None) -> None:
        """Answer nothing until healed (then answer normally), stopped, or the client leaves."""
        event = self.state.hang_started(model)
        try:
            while not event.wait(_HANG_POLL_S):
                if self._peer_gone():
                    raise _AbortedError
            if self.state.stopping.is_set():
                raise _AbortedError
        finally:
            self.state.hang_ended(model, event)

    def _reset(self) -> None:
        """Abort the TCP connection with RST (SO_LINGER 0, then close)."""
        self._record()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        raise _AbortedError

    def _record(self) -> None:
        # Before any byte is sent: a client that got its answer must find it in the log.
        self.state.finish(self._index, self._status, self._fault, self._task)

    def _start(self, status: int, headers: Mapping[str, str]) -> None:
        self._status = status
        self._record()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)

    def _send_json(
        self,
        status: int,
        body: object,
        headers: Mapping[str, str],
        fault: Fault | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        self._start(status, {"Content-Type": "application/json", **headers})
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault is not None and fault.name == "slow_first_chunk":
            self._wait(fault.delay)
        if fault is not None and fault.name == "cut_stream":
            self.wfile.write(data[: len(data) // 2])
            self._cut()
        self.wfile.write(data)

    def _cut(self) -> None:
        """Close the connection mid-body (a clean FIN, unlike :meth:`_reset`)."""
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        raise _AbortedError

    def _send_events(
        self,
        events: Iterable[bytes],
        headers: Mapping[str, str],
        fault: Fault | None,
    ) -> None:
        """Stream server-sent events with chunked transfer encoding."""
        self._start(
            200,
            {
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "Transfer-Encoding": "chunked",
                **headers,
            },
        )
        self.end_headers()
        for index, event in enumerate(events):
            if index == 0 and fault is not None and fault.name == "slow_first_chunk":
                self._wait(fault.delay)
            if fault is not None and fault.name == "cut_stream" and index >= fault.after:
                self._cut()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.write(b"0\r\n\r\n")

    # -- behaviour --------------------------------------------------------------------------

    def _serve(self, route: Route, model: str | None, payload: dict[str, Any]) -> None:
        if route.kind == "server_health":
            self._send_json(200, {"status": "ok"}, {})
            return
        if model is not None and not self.state.known(model):
            self._fault = "not_found"
            self._error(route, model=model, status=404)
            return
        task = route.task
        if route.kind == "infer" and model is not None:
            task = task or self.state.task_of(model) or responses.infer_task(model, payload)
            self._task = task
        self._wait(self.state.latency_of(model))
        fault = self.state.take_fault(model)
        if fault is not None:
            self._fault = fault.name
            if fault.name == "hang":
                self._hang(model)
                fault = None  # healed: answer normally
            elif fault.name == "reset":
                self._reset()
            elif fault.status is not None:
                self._error(
                    route,
                    model=model,
                    status=fault.status,
                    message=fault.message,
                    headers=fault.headers,
                    fault=fault,
                    task=task,
                )
                return
        admitted, quota = self.state.admit(model)
        if not admitted:
            assert quota is not None
            self._fault = "rate_limit"
            limited = Fault("rate_limit", None, 429, retry_after=quota.reset_s)
            self._error(
                route, model=model, status=429, headers=quota.headers(), fault=limited, task=task
            )
            return
        extra = {**(quota.headers() if quota else {}), **(fault.headers if fault else {})}
        if model is None:
            self._send_json(200, responses.models_list(self.state.models()), extra, fault)
        else:
            self._answer(route, model=model, task=task, payload=payload, headers=extra, fault=fault)

    def _answer(
        self,
        route: Route,
        *,
        model: str,
        task: str | None,
        payload: dict[str, Any],
        headers: dict[str, str],
        fault: Fault | None,
    ) -> None:
        if route.kind == "health":
            self._send_json(200, {}, headers, fault)
            return
        if route.kind == "info":
            self._send_json(200, responses.endpoint_info(model, self.state.task_of(model)), headers)
            return
        if route.kind in _OPENAI_GENERATIONS:
            generation, answer, chunked = _OPENAI_GENERATIONS[route.kind]
            gen = generation(model, payload)
            self.state.spend_tokens(model, gen.input_tokens + gen.output_tokens)
            if payload.get("stream"):
                chunks = chunked(model, payload, gen)
                self._send_events(_sse(chunks, done=True), headers, fault)
            else:
                self._send_json(200, answer(model, payload, gen), headers, fault)
            return
        if route.kind == "embeddings":
            self._send_json(200, responses.openai_embeddings(model, payload), headers, fault)
            return
        inputs = payload.get("inputs", "")
        text = inputs if isinstance(inputs, str) else ""
        if task == "text-generation":
            gen = responses.tgi_generation(model, payload)
            self.state.spend_tokens(model, gen.input_tokens + gen.output_tokens)
            if payload.get("stream"):
                self._send_events(_sse(responses.tgi_events(gen), done=False), headers, fault)
            else:
                self._send_json(200, responses.tgi_response(payload, gen), headers, fault)
            return
        body: object
        if task == "summarization":
            body = responses.summarize(text, payload)
        elif task == "translation":
            body = responses.translate(text)
        elif task == "feature-extraction":
            body = responses.embeddings(inputs)
        elif task == "conversational":
            gen = responses.chat_generation(model, payload)
            body = responses.chat_completion(model, payload, gen)
        else:
            body = responses.text2text(model, text)
        self.state.spend_tokens(model, responses.count_tokens(text))
        self._send_json(200, body, headers, fault)

    def _error(
        self,
        route: Route,
        *,
        model: str | None,
        status: int,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
        fault: Fault | None = None,
        task: str | None = None,
    ) -> None:
        """Send an error the way the emulated API would (HF flat, OpenAI nested)."""
        message = message or _default_message(status, model, route.api)
        body: dict[str, Any]
        if route.api == "openai":
            kind, code = _OPENAI_ERRORS.get(status, ("server_error", None))
            body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        else:
            body = {"error": message}
            if status == 422 and task in ("text-generation", "conversational"):
                body["error_type"] = "validation"  # what TGI sends for invalid inputs
        if status == 503 and fault is not None and fault.name == "loading":
            body["estimated_time"] = fault.estimated_time
        extra = _rate_limit_headers(fault.retry_after if fault else 1.0) if status == 429 else {}
        self._send_json(status, body, {**extra, **(headers or {})})


_OPENAI_ERRORS: Final[dict[int, tuple[str, str | None]]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    503: ("server_error", "model_loading"),
}


def _default_message(status: int, model: str | None, api: str) -> str:
    if status == 503:
        return f"Model {model} is currently loading"
    if status == 429:
        return f"Rate limit reached for {model} on requests. Please try again later."
    if status in (401, 403):
        if api == "openai":
            return "Incorrect API key provided."
        return "Invalid credentials in Authorization header"
    if status == 404:
        if api == "openai":
            return f"The model `{model}` does not exist or you do not have access to it."
        return f"Model {model} does not exist"
    if status in (400, 409, 413, 422):
        return "Input validation error: invalid parameters"
    return HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Server error"


def _rate_limit_headers(retry_after: float) -> dict[str, str]:
    seconds = max(0, math.ceil(retry_after))
    return {
        "Retry-After": str(seconds),
        "retry-after-ms": str(max(0, round(retry_after * 1000))),
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{retry_after:g}s",
        "RateLimit": f'"api";r=0;t={seconds}',
        "RateLimit-Policy": '"fixed window";"api";q=100;w=60',
    }


def _sse(events: Iterator[dict[str, Any]], *, done: bool) -> Iterator[bytes]:
    for event in events:
        yield b"data: " + json.dumps(event).encode() + b"\n\n"
    if done:
        yield b"data: [DONE]\n\n"
