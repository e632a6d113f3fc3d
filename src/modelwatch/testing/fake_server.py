"""``FakeModelServer``: a local model endpoint with programmable faults, for failover tests.

It speaks enough of the Hugging Face Inference API (text generation with TGI details and
streaming, text2text, summarization, translation, feature extraction, chat completion) and
of the OpenAI chat completions API (streaming included) for the real ``huggingface_hub`` and
``openai`` clients to work against it unmodified, and it fails on demand the way real
endpoints fail: 503 "model is loading", 429 with ``Retry-After``, 5xx, 401, 404, 400/422,
hangs, connection resets, slow first chunks and streams cut mid-way.

Example::

    from huggingface_hub import InferenceClient
    from modelwatch.testing.fake_server import FakeModelServer

    with FakeModelServer() as server:
        client = InferenceClient(model=server.model_url("google/flan-t5-large"))
        client.text_generation("Hello there")          # '[google/flan-t5-large] Hello there'
        server.fail("google/flan-t5-large", "loading", times=1)
        client.text_generation("Hello")                # raises HfHubHTTPError (503)
        client.text_generation("Hello")                # works again

Answers are deterministic: text generation and chat echo the (last user) prompt, prefixed
with ``[model]``, cut at ``max_new_tokens``/``max_tokens`` (default 16); a summary is the
first sentence, at most 12 words; embeddings are 8 floats derived from a hash of the text.
A token is a whitespace-separated word; each chat message costs 3 tokens more.
"""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Final
from urllib.parse import quote

from modelwatch.testing._fake_handler import FakeHTTPServer
from modelwatch.testing._fake_state import (
    ANY_MODEL,
    FAULTS,
    Fault,
    FaultName,
    Quota,
    RequestRecord,
    State,
    check_status,
)

__all__ = ["ANY_MODEL", "FAULTS", "FakeModelServer", "FaultName", "RequestRecord"]

#: How long :meth:`FakeModelServer.stop` waits for handler threads before giving up.
STOP_TIMEOUT_S: Final = 5.0


class FakeModelServer:
    """A fake Hugging Face / OpenAI-compatible model server on 127.0.0.1.

    Args:
        host: Interface to bind (keep the loopback default in tests).
        port: TCP port; ``0`` picks a free one (see :attr:`url`).
        models: ``None`` serves any model id. Otherwise only these models exist (others get
            404 "model not found"); a mapping also fixes each model's Hugging Face task
            (``"text-generation"``, ``"text2text-generation"``, ``"summarization"``,
            ``"translation"``, ``"feature-extraction"``), which otherwise is read from the
            request (``huggingface_hub`` posts every task to the same URL).

    Use it as a context manager (``with`` or ``async with``) or call :meth:`start` and
    :meth:`stop`. All methods are thread-safe and may be called while requests are in flight.

    Faults (:meth:`fail`) are queued per model: a request takes the first fault in its
    model's queue, then those registered for :data:`ANY_MODEL` (``"*"``); a fault given
    ``times=n`` leaves the queue after ``n`` requests, otherwise it stays until :meth:`heal`.

    ================== ===================================================================
    fault              effect
    ================== ===================================================================
    ``loading``        503 ``{"error": "Model X is currently loading", "estimated_time": s}``
    ``rate_limit``     429 with ``Retry-After`` (s), ``retry-after-ms``, ``x-ratelimit-*``
    ``server_error``   500 (or ``status=`` 502, 503, 504...)
    ``auth``           401 (or ``status=403``)
    ``not_found``      404 model not found
    ``bad_request``    400 (or ``status=`` 409, 413, 422); ``message=`` sets the text,
                       e.g. a context-length error
    ``hang``           no answer until healed (then a normal answer) or the server stops
    ``reset``          TCP reset (RST) after the request is read
    ``slow_first_chunk`` headers at once, then ``delay=`` seconds before the first chunk
    ``cut_stream``     the connection closes after ``after=`` chunks (half the body if
                       the answer is not streamed)
    ================== ===================================================================
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        models: Iterable[str] | Mapping[str, str] | None = None,
    ) -> None:
        self._address = (host, port)
        self._state = State(models)
        self._httpd: FakeHTTPServer | None = None
        self._acceptor: threading.Thread | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._lifecycle = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeModelServer:
        """Bind and start serving (takes milliseconds). Returns ``self``.

        Raises:
            RuntimeError: if the server is already running or was stopped (use a new one).
        """
        with self._lifecycle:
            if self._httpd is not None or self._state.stopping.is_set():
                raise RuntimeError("a FakeModelServer can be started once")
            self._httpd = FakeHTTPServer(self._address, self._state)
            self._wake = socket.socketpair()
            self._acceptor = threading.Thread(
                target=self._accept_loop,
                args=(self._httpd, self._wake[0]),
                name="modelwatch-fake-accept",
                daemon=True,
            )
            self._acceptor.start()
        return self

    def _accept_loop(self, httpd: FakeHTTPServer, wake: socket.socket) -> None:
        # A selector on the listening socket and a wake-up socket: no polling interval, so
        # stop() is immediate (serve_forever() would take up to its poll interval).
        with selectors.DefaultSelector() as selector:
            selector.register(httpd.socket, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while not self._state.stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is wake:
                        return
                    try:
                        request, address = httpd.get_request()
                    except OSError:
                        continue
                    httpd.process_request(request, address)

    def stop(self) -> None:
        """Stop serving: release hung requests, close every connection, join every thread.

        Returns within milliseconds even with hung requests in flight. Safe to call twice.

        Raises:
            RuntimeError: if a handler thread failed to finish within 5 s (a bug).
        """
        with self._lifecycle:
            httpd, acceptor, wake = self._httpd, self._acceptor, self._wake
            self._state.release_all()
            if httpd is None or acceptor is None or wake is None:
                return
            self._httpd = self._acceptor = self._wake = None
            wake[1].send(b"x")
            acceptor.join(STOP_TIMEOUT_S)
            httpd.close_connections()
            stuck = []
            for thread in httpd.live_threads():
                thread.join(STOP_TIMEOUT_S)
                if thread.is_alive():
                    stuck.append(thread.name)
            httpd.server_close()
            wake[0].close()
            wake[1].close()
        if stuck or acceptor.is_alive():
            raise RuntimeError(f"FakeModelServer threads did not stop: {stuck}")

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._httpd is not None

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeModelServer:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()  # fast: the handler threads are woken, not waited out

    # -- addresses --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self._address[0]}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """What to pass as ``openai.OpenAI(base_url=...)`` (``{url}/v1``).

        The model is read from the request body. ``InferenceClient(base_url=...)`` accepts
        it too, for ``chat_completion``.
        """
        return f"{self.url}/v1"

    def model_url(self, model: str) -> str:
        """The endpoint URL of ``model``: pass it as ``InferenceClient(model=...)``.

        Every Hugging Face task works against it, and ``chat_completion`` too (the client
        appends ``/v1/chat/completions``).
        """
        return f"{self.url}/models/{quote(model, safe='/')}"

    # -- models -----------------------------------------------------------------------------

    def add_model(self, model: str, *, task: str | None = None) -> None:
        """Serve ``model`` (needed only if the server was given ``models=``), with a task."""
        with self._state.lock:
            self._state.tasks[model] = task

    # -- faults -----------------------------------------------------------------------------

    def fail(
        self,
        model: str,
        fault: FaultName,
        *,
        times: int | None = None,
        status: int | None = None,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float = 1.0,
        estimated_time: float = 20.0,
        delay: float = 1.0,
        after: int = 1,
    ) -> None:
        """Make requests of ``model`` (or :data:`ANY_MODEL`) fail with ``fault``.

        Args:
            model: Model id, as the client sends it, or ``"*"`` for every model.
            fault: One of :data:`FAULTS` (see the table in the class docstring).
            times: Fail only the next ``times`` requests; ``None`` until :meth:`heal`.
            status: HTTP status for the HTTP faults (``server_error``: 5xx, ``auth``: 401 or
                403, ``bad_request``: 400, 409, 413 or 422).
            message: Error message in the body (defaults mimic the real services).
            headers: Extra response headers (also on ``slow_first_chunk``/``cut_stream``).
            retry_after: ``rate_limit``: seconds advertised in ``Retry-After`` (rounded up)
                and ``retry-after-ms``.
            estimated_time: ``loading``: the body's ``estimated_time``.
            delay: ``slow_first_chunk``: seconds before the first chunk.
            after: ``cut_stream``: chunks sent before the connection closes.

        Raises:
            ValueError: unknown fault, a status that does not fit it, or ``times < 1``.
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; accepted: {', '.join(FAULTS)}")
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None, got {times}")
        if after < 0 or delay < 0 or retry_after < 0:
            raise ValueError("after, delay and retry_after must be >= 0")
        entry = Fault(
            name=fault,
            remaining=times,
            status=check_status(fault, status),
            message=message,
            headers=dict(headers or {}),
            retry_after=retry_after,
            estimated_time=estimated_time,
            delay=delay,
            after=after,
        )
        with self._state.lock:
            self._state.faults.setdefault(model, []).append(entry)

    def heal(self, model: str | None = None) -> None:
        """Make ``model`` (every model if ``None``) healthy again.

        Removes its faults and added latency, refills its rate-limit quota, and lets its hung
        requests go on to a normal answer.
        """
        self._state.heal(model)

    def set_latency(self, model: str, seconds: float) -> None:
        """Delay every answer of ``model`` (or ``"*"``) by ``seconds`` (0 removes it)."""
        if seconds < 0:
            raise ValueError(f"latency must be >= 0, got {seconds}")
        with self._state.lock:
            if seconds:
                self._state.latency[model] = seconds
            else:
                self._state.latency.pop(model, None)

    def set_rate_limit(
        self,
        model: str,
        *,
        requests: int | None = None,
        tokens: int | None = None,
        reset_s: float = 60.0,
    ) -> None:
        """Give ``model`` a quota, advertised on every answer and enforced.

        Each answer then carries ``x-ratelimit-limit-requests``,
        ``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` (and the same for
        ``tokens``). Each request spends one request, each answer its tokens; once a resource
        is spent, requests get 429 with ``Retry-After: reset_s`` until :meth:`heal` or a new
        call of this method. Pass neither ``requests`` nor ``tokens`` to remove the quota.
        """
        with self._state.lock:
            if requests is None and tokens is None:
                self._state.quotas.pop(model, None)
            else:
                self._state.quotas[model] = Quota(requests, tokens, reset_s)

    # -- observation ------------------------------------------------------------------------

    def requests(self, model: str | None = None) -> list[RequestRecord]:
        """Requests received so far, oldest first (only ``model``'s if given)."""
        with self._state.lock:
            return [r for r in self._state.log if model is None or r.model == model]

    def request_count(self, model: str | None = None) -> int:
        """How many requests were received (for ``model`` if given)."""
        return len(self.requests(model))

    def clear_requests(self) -> None:
        """Forget the request log."""
        with self._state.lock:
            self._state.log.clear()

    def __repr__(self) -> str:
        where = self.url if self._httpd is not None else "stopped"
        return f"<FakeModelServer {where}>"
