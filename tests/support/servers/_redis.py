"""A redis-server on 127.0.0.1 per session or per test."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

from support.servers._process import (
    LOCALHOST,
    ManagedProcess,
    _mkdtemp,
    _Stack,
    _start_on_free_port,
    require_server,
    spawn,
    wait_until,
)

# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------

_REDIS_DATABASES = 64


@dataclass
class RedisServer:
    """A redis-server on 127.0.0.1. `url` is database 0, shared: use distinct keys there."""

    host: str
    port: int
    process: ManagedProcess
    _next_db: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def fresh_url(self) -> str:
        """URL of a database (1..63) nobody else is using right now, flushed; wraps around."""
        with self._lock:
            db = self._next_db
            self._next_db = db % (_REDIS_DATABASES - 1) + 1
        replies = self.command(["SELECT", str(db)], ["FLUSHDB"])
        assert replies == [b"+OK", b"+OK"], replies
        return self.url_for(db)

    def command(self, *commands: Sequence[str]) -> list[bytes]:
        """Send commands on one connection; returns each reply's first line (e.g. b"+PONG")."""
        return _redis_command(self.host, self.port, commands)

    def stop(self) -> None:
        """Stop the server now (e.g. to test "Redis went away"); stopping twice is harmless."""
        self.process.stop()

    def restart(self, timeout: float = 10.0) -> None:
        """Start the stopped server again on the same port with the same config ("Redis is
        back"); waits until it answers PING."""
        if self.process.running:
            return
        log = self.process.log_path.with_suffix(".restarted.log")
        argv = cast("list[str]", self.process.popen.args)  # spawn() passes a list
        self.process = spawn(self.process.name, argv, log, cwd=self.process.log_path.parent)
        wait_until(
            lambda: not self.process.running or self.command(["PING"]) == [b"+PONG"],
            timeout=timeout,
            message=f"redis-server on {self.host}:{self.port} to be back",
        )
        if not self.process.running:
            raise AssertionError(f"redis-server did not restart\n{self.process.output}")


def _redis_command(host: str, port: int, commands: Sequence[Sequence[str]]) -> list[bytes]:
    payload = b"".join(
        b"*%d\r\n" % len(cmd) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in cmd)
        for cmd in commands
    )
    with socket.create_connection((host, port), timeout=2.0) as sock:
        sock.sendall(payload)
        buffer = b""
        while buffer.count(b"\r\n") < len(commands):
            chunk = sock.recv(4096)
            if not chunk:
                break
            buffer += chunk
    return buffer.split(b"\r\n")[: len(commands)]


def start_redis(workdir: Path) -> RedisServer:
    """Start a redis-server in `workdir`; the caller stops it (prefer `redis_server_factory`)."""
    binary = require_server("redis-server")
    workdir.mkdir(parents=True, exist_ok=True)

    def argv(port: int) -> list[str]:
        config = workdir / "redis.conf"
        config.write_text(
            f'bind {LOCALHOST}\nport {port}\nprotected-mode yes\nsave ""\nappendonly no\n'
            f"dir {workdir}\ndaemonize no\ndatabases {_REDIS_DATABASES}\nloglevel warning\n"
        )
        return [binary, str(config)]

    def ready(port: int) -> bool:
        return _redis_command(LOCALHOST, port, [["PING"]]) == [b"+PONG"]

    process, port = _start_on_free_port("redis-server", workdir, argv, ready)
    return RedisServer(LOCALHOST, port, process)


_start_redis = start_redis  # the name tests/resilience/test_shared_state.py imports


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session: use distinct keys on `.url`, or a `.fresh_url()` db.

    def test_x(redis_server):
        client = redis.Redis.from_url(redis_server.fresh_url())
    """
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Factory: a private redis-server for this test, one you may stop; all stopped after it.

    server = redis_server_factory()
    ...
    server.stop()   # the breaker must keep working without Redis
    """
    stack = _Stack()

    def start() -> RedisServer:
        server = start_redis(Path(_mkdtemp(tmp_path / "redis", "redis")))
        stack.push(server.stop)
        return server

    try:
        yield start
    finally:
        stack.close()
