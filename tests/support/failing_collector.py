"""An OTLP/HTTP endpoint on 127.0.0.1 that answers every export with an HTTP error."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class FailingCollector:
    """Answers ``status`` (500 by default) to every POST and counts them."""

    def __init__(self, status: int = 500) -> None:
        self.status = status
        self.posts = 0
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                collector.posts += 1
                self.send_response(collector.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def failing_collector() -> Iterator[FailingCollector]:
    """An OTLP/HTTP endpoint answering HTTP 500 to every export."""
    collector = FailingCollector()
    try:
        yield collector
    finally:
        collector.close()
