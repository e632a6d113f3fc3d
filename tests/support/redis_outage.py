"""Redis outages for tests: a client that records which threads use it, and a restart on the
same port (after SIGKILL), so "Redis went away and came back" is a real event."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from support.servers import RedisServer
from support.servers._process import require_server, spawn, wait_until

__all__ = ["Watched", "enable_persistence", "restart", "watched"]


class Watched:
    """A redis client whose connection checkouts are recorded per thread name (``threads``)."""

    def __init__(self, url: str, socket_timeout: float = 3.0) -> None:
        # a socket timeout far longer than any call may take: blocking would be obvious
        self.client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=1.0
        )
        self.threads: list[str] = []
        pool = self.client.connection_pool
        original = pool.get_connection

        def get_connection(*args: Any, **kwargs: Any) -> Any:
            self.threads.append(threading.current_thread().name)
            return original(*args, **kwargs)

        pool.get_connection = get_connection  # type: ignore[method-assign]

    def close(self) -> None:
        self.client.close()
        self.client.connection_pool.disconnect()


@pytest.fixture
def watched() -> Iterator[Callable[[str], Watched]]:
    """Factory of :class:`Watched` clients for a Redis URL, closed after the test."""
    made: list[Watched] = []

    def build(url: str) -> Watched:
        made.append(Watched(url))
        return made[-1]

    yield build
    for w in made:
        w.close()


def enable_persistence(server: RedisServer) -> None:
    """Turn on the append-only file (fsync always) and write it into the config file, so the
    data survives :func:`restart`."""
    replies = server.command(
        ["CONFIG", "SET", "appendonly", "yes"],
        ["CONFIG", "SET", "appendfsync", "always"],
        ["CONFIG", "REWRITE"],
    )
    assert replies == [b"+OK"] * 3, replies
    wait_until(
        lambda: b"aof_rewrite_in_progress:0" in _info(server),
        message="the first append-only file to be written",
    )


def _info(server: RedisServer) -> bytes:
    import socket

    with socket.create_connection((server.host, server.port), timeout=2.0) as sock:
        sock.sendall(b"*2\r\n$4\r\nINFO\r\n$11\r\npersistence\r\n")
        data = b""
        while b"aof_rewrite_in_progress" not in data or not data.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def restart(server: RedisServer) -> None:
    """Kill the server (SIGKILL) and start it again on the same port and config."""
    workdir = server.process.log_path.parent
    server.process.stop(signal.SIGKILL)
    binary = require_server("redis-server")
    server.process = spawn(
        "redis-server",
        [binary, str(workdir / "redis.conf")],
        workdir / "redis-server.restarted.log",
        cwd=workdir,
    )
    wait_until(lambda: server.command(["PING"]) == [b"+PONG"], message="redis restarted")
