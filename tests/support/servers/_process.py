"""Generic helpers for real-server fixtures: the skip/fail rule, ports, polling, processes."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

LOCALHOST = "127.0.0.1"
REQUIRE_ENV = "MODELWATCH_REQUIRE_SERVERS"
TESTS_DIR = Path(__file__).resolve().parents[2]
_EXTRA_BIN_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin")
_INSTALL_HINTS = {
    "redis-server": "apt-get install redis-server",
    "prometheus": "apt-get install prometheus",
    "promtool": "apt-get install prometheus",
    "prometheus-alertmanager": "apt-get install prometheus-alertmanager",
    "amtool": "apt-get install prometheus-alertmanager",
}
_START_ATTEMPTS = 3  # free_port() can race with another process: retry on a fresh port


# --------------------------------------------------------------------------------------------
# Generic helpers
# --------------------------------------------------------------------------------------------


def servers_required() -> bool:
    """True when MODELWATCH_REQUIRE_SERVERS=1: a missing server is then a failure, not a skip."""
    return os.environ.get(REQUIRE_ENV, "") == "1"


def _find_binary(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(_EXTRA_BIN_DIRS))


def require_server(name: str) -> str:
    """Return the path of server binary `name`, or skip (fail under MODELWATCH_REQUIRE_SERVERS=1).

    `name` is a binary (`redis-server`, `prometheus`, `promtool`, `prometheus-alertmanager`,
    `amtool`) or `celery`, for which the Python interpreter that can run `-m celery` is returned.

        promtool = require_server("promtool")
        subprocess.run([promtool, "check", "rules", path], check=True)
    """
    if name == "celery":
        missing = [m for m in ("celery", "redis") if importlib.util.find_spec(m) is None]
        found = None if missing else sys.executable
        hint = "pip install -e '.[dev]'"
    else:
        found = _find_binary(name)
        hint = _INSTALL_HINTS.get(name, f"apt-get install {name}")
    if found is not None:
        return found
    if servers_required():
        pytest.fail(
            f"{name} not installed and {REQUIRE_ENV}=1 makes that a failure "
            f"(run `make test` as root, or {hint})",
            pytrace=False,
        )
    pytest.skip(
        f"{name} not installed (run as root or {hint}); set {REQUIRE_ENV}=1 to make this a failure"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
    ignore: tuple[type[BaseException], ...] = (OSError,),
) -> T:
    """Call `predicate` until it returns something truthy, and return that; poll with a deadline.

    Exceptions of the `ignore` types (connection refused while a server starts, ...) count as
    "not yet". On timeout raises AssertionError with the last value and the last ignored error.

        value = wait_until(lambda: prom.query_value("up"), timeout=10, message="first scrape")
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    last_error: BaseException | None = None
    while True:
        try:
            last = predicate()
        except ignore as exc:
            last_error = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {message}; "
                f"last value {last!r}, last error {last_error!r}"
            )
        time.sleep(interval)


def http_request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """One HTTP request with the standard library; returns (status, body) for any status."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def _json_request(method: str, url: str, payload: Any = None, timeout: float = 5.0) -> Any:
    body = None if payload is None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    status, data = http_request(method, url, body, headers, timeout)
    if status >= 300:
        raise AssertionError(f"{method} {url} -> HTTP {status}: {data[:500]!r}")
    return json.loads(data) if data else None


def _ready_http(url: str) -> bool:
    status, _ = http_request("GET", url, timeout=1.0)
    return status == 200


def _pid_state(pid: int) -> str | None:
    """Process state letter as `ps -o stat=` shows it (R, S, Z, ...), or None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _hex_address(text: str) -> tuple[str, int]:
    host_hex, port_hex = text.split(":")
    raw = bytes.fromhex(host_hex)
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # /proc/net/tcp6 stores four little-endian 32-bit words
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        host = socket.inet_ntop(socket.AF_INET6, words)
    return host, int(port_hex, 16)


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """(host, port) of every TCP socket process `pid` listens on, from /proc (like `ss -ltnp`).

    assert {host for host, _ in listening_addresses(prom.process.pid)} == {"127.0.0.1"}
    """
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    found.append(_hex_address(fields[1]))
    return sorted(found)


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


@dataclass
class ManagedProcess:
    """A server process with its output in a log file; `stop()` ends it by PID and reaps it."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    leaked: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send `sig` to the PID, wait up to `timeout` s (then SIGKILL), reap it and its children.

        Returns the exit status. Descendants still running after the parent exited are killed by
        PID and listed in `leaked`; zombies re-parented to init are left for init to reap.
        """
        if self.popen.poll() is None:
            descendants = _descendants(self.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(10)
            self._finish_descendants(descendants)
        return self.popen.returncode

    def _finish_descendants(self, pids: list[int]) -> None:
        def alive() -> list[int]:
            return [pid for pid in pids if _pid_state(pid) not in (None, "Z")]

        with contextlib.suppress(AssertionError):
            wait_until(lambda: not alive(), timeout=5.0, message="children to exit")
        for pid in alive():
            self.leaked.append(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def spawn(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start `argv` with stdin closed and stdout+stderr going to `log_path`."""
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
        )
    return ManagedProcess(name, popen, log_path)


def _start_on_free_port(
    name: str,
    workdir: Path,
    argv_for_port: Callable[[int], list[str]],
    is_ready: Callable[[int], bool],
    timeout: float = 20.0,
) -> tuple[ManagedProcess, int]:
    """Start a server on a free port and poll `is_ready(port)`; retry when the port was taken."""
    for attempt in range(1, _START_ATTEMPTS + 1):
        port = free_port()
        process = spawn(name, argv_for_port(port), workdir / f"{name}.{attempt}.log", cwd=workdir)
        try:
            wait_until(
                lambda: not process.running or is_ready(port),
                timeout=timeout,
                message=f"{name} on {LOCALHOST}:{port} to be ready",
            )
        except AssertionError as exc:
            process.stop()
            raise AssertionError(f"{exc}\n--- {name} output ---\n{process.output}") from None
        if process.running:
            return process, port
        process.stop()
        output = process.output
        if "address already in use" not in output.lower() or attempt == _START_ATTEMPTS:
            raise AssertionError(
                f"{name} exited with status {process.popen.returncode} before it was ready\n"
                f"--- {name} output ---\n{output}"
            )
    raise AssertionError("unreachable")  # pragma: no cover


class _Stack:
    """Things to stop at fixture teardown, stopped in reverse order even when one fails."""

    def __init__(self) -> None:
        self._stops: list[Callable[[], None]] = []

    def push(self, stop: Callable[[], None]) -> None:
        self._stops.append(stop)

    def close(self) -> None:
        errors: list[BaseException] = []
        while self._stops:
            try:
                self._stops.pop()()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def _mkdtemp(base: Path, prefix: str) -> str:
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"{prefix}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return str(path)
