"""Real servers on 127.0.0.1 for tests: Redis, Prometheus, Alertmanager and Celery workers.

Each server is started from its Debian binary with a temporary directory, bound to 127.0.0.1 only,
polled until ready and stopped by PID by the fixture that started it. When a binary is missing the
test is skipped, or fails when MODELWATCH_REQUIRE_SERVERS=1 (CI): see `require_server`.

Fixtures (loaded as a plugin by tests/conftest.py):

- `redis_server` (session): a `RedisServer` with `.host`, `.port`, `.url` and `.fresh_url()`.
- `redis_server_factory`: private Redis servers for one test, which it may `.stop()`.
- `prometheus_server` / `module_prometheus_server`: factories returning a `PrometheusServer`.
- `alertmanager_server` / `module_alertmanager_server`: factories returning an `AlertmanagerServer`.
- `webhook_receiver`: an HTTP server collecting Alertmanager webhook payloads.
- `celery_worker`: factory starting `celery -A MODULE worker` against the Redis broker.

Helpers: `require_server(name)` (the skip/fail rule), `free_port()`, `wait_until(predicate)`
(poll with a deadline), `http_request()`, `listening_addresses(pid)`, `prometheus_config()`,
`alertmanager_config()`. See /work/shared/SERVERS.md for measured start-up times and pitfalls.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

LOCALHOST = "127.0.0.1"
REQUIRE_ENV = "MODELWATCH_REQUIRE_SERVERS"
TESTS_DIR = Path(__file__).resolve().parent.parent
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


# --------------------------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------------------------


def _host_port(target: Any) -> str:
    """'127.0.0.1:9090' from a server object with `.url`, a URL or a host:port string."""
    text = str(getattr(target, "url", target))
    if "://" in text:
        return urllib.parse.urlsplit(text).netloc
    return text


def prometheus_config(
    *,
    scrape_targets: Sequence[Any] = (),
    rule_files: Sequence[str | Path] = (),
    alertmanagers: Sequence[Any] = (),
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    job_name: str = "test",
) -> str:
    """A prometheus.yml text (JSON is YAML) scraping `scrape_targets` ("host:port" or URLs)."""
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [],
    }
    if scrape_targets:
        config["scrape_configs"].append(
            {
                "job_name": job_name,
                "static_configs": [{"targets": [_host_port(t) for t in scrape_targets]}],
            }
        )
    if alertmanagers:
        config["alerting"] = {
            "alertmanagers": [
                {"static_configs": [{"targets": [_host_port(a) for a in alertmanagers]}]}
            ]
        }
    return json.dumps(config, indent=2)


def _write_prometheus_config(
    workdir: Path,
    config: str | None = None,
    *,
    rules: str | Mapping[str, Any] | None = None,
    rule_files: Sequence[str | Path] = (),
    **kwargs: Any,
) -> None:
    files = [str(path) for path in rule_files]
    if rules is not None:
        rules_path = workdir / "rules.yml"
        rules_path.write_text(rules if isinstance(rules, str) else json.dumps(rules, indent=2))
        files.append(str(rules_path))
    if config is None:
        config = prometheus_config(rule_files=files, **kwargs)
    (workdir / "prometheus.yml").write_text(config)


class PrometheusServer:
    """A Prometheus 2.x on 127.0.0.1 with its HTTP API wrapped; see `prometheus_server`."""

    def __init__(self, process: ManagedProcess, port: int, workdir: Path) -> None:
        self.process = process
        self.port = port
        self.host = LOCALHOST
        self.workdir = workdir
        self.url = f"http://{LOCALHOST}:{port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    def write_config(self, config: str | None = None, **kwargs: Any) -> None:
        """Write prometheus.yml (and rules.yml when `rules=` is given) into the server's dir.

        `config` is a whole prometheus.yml text; otherwise one is built from the keyword
        arguments of `prometheus_config`. `rules=` is a rule file's text (or a mapping, written
        as JSON), added to the rule files.
        """
        _write_prometheus_config(self.workdir, config, **kwargs)

    def reload(self, config: str | None = None, **kwargs: Any) -> None:
        """Optionally rewrite the config (same arguments as `write_config`), then POST /-/reload."""
        if config is not None or kwargs:
            self.write_config(config, **kwargs)
        status, body = http_request("POST", f"{self.url}/-/reload", timeout=10.0)
        if status != 200:
            raise AssertionError(f"Prometheus reload failed: HTTP {status}: {body.decode()}")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>?<params> and return its `data`; raises unless status is success."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        reply = _json_request("GET", f"{self.url}/api/v1/{path}{query}")
        if reply.get("status") != "success":
            raise AssertionError(f"Prometheus API {path} failed: {reply}")
        return reply["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the result list (`metric` labels and `value` [time, "text"] each)."""
        data = self.api("query", query=promql)
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_value(self, promql: str) -> float | None:
        """The value of an instant query with one result, None with none; >1 result is an error."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) > 1:
            raise AssertionError(f"{promql} returned {len(result)} series: {result}")
        return float(result[0]["value"][1])

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing): `labels`, `annotations`, `state`, `value`."""
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def rules(self) -> list[dict[str, Any]]:
        """Loaded rule groups, each with `name`, `file` and `rules` (with `health`, `state`)."""
        groups: list[dict[str, Any]] = self.api("rules")["groups"]
        return groups

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets, each with `scrapeUrl`, `health` ("up"/"down"/"unknown")."""
        targets: list[dict[str, Any]] = self.api("targets", state="active")["activeTargets"]
        return targets

    def wait_for_targets_up(self, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Wait until at least `count` targets exist and all of them are up."""

        def up() -> list[dict[str, Any]] | None:
            targets = self.targets()
            healthy = len(targets) >= count and all(t["health"] == "up" for t in targets)
            return targets if healthy else None

        return wait_until(up, timeout=timeout, message=f"{count} Prometheus target(s) up")

    def wait_for_value(
        self,
        promql: str,
        predicate: Callable[[float], bool] = lambda _: True,
        timeout: float = 20.0,
    ) -> float:
        """Poll `query_value(promql)` until it has a value satisfying `predicate`; return it."""

        def check() -> tuple[float] | None:
            value = self.query_value(promql)
            return (value,) if value is not None and predicate(value) else None

        return wait_until(check, timeout=timeout, message=f"a matching value of {promql}")[0]

    def wait_for_alert(
        self, name: str, state: str = "firing", timeout: float = 30.0
    ) -> dict[str, Any]:
        """Wait until alert `name` is in `state` ("pending" or "firing"); return the alert."""

        def find() -> dict[str, Any] | None:
            for alert in self.alerts():
                if alert["labels"].get("alertname") == name and alert["state"] == state:
                    return alert
            return None

        return wait_until(find, timeout=timeout, message=f"alert {name} to be {state}")

    def wait_for_rule_groups(self, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least `count` rule groups are loaded (after start or `reload()`)."""

        def loaded() -> list[dict[str, Any]] | None:
            groups = self.rules()
            return groups if len(groups) >= count else None

        return wait_until(loaded, timeout=timeout, message=f"{count} rule group(s) loaded")

    def stop(self) -> None:
        self.process.stop()


PrometheusFactory = Callable[..., PrometheusServer]


def _prometheus_factory(base: Path) -> tuple[PrometheusFactory, _Stack]:
    stack = _Stack()

    def start(config: str | None = None, **kwargs: Any) -> PrometheusServer:
        binary = require_server("prometheus")
        workdir = Path(_mkdtemp(base, "prometheus"))
        _write_prometheus_config(workdir, config, **kwargs)

        def argv(port: int) -> list[str]:
            return [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={LOCALHOST}:{port}",
                f"--web.external-url=http://{LOCALHOST}:{port}",
                "--web.enable-lifecycle",
                "--rules.alert.resend-delay=1s",
            ]

        process, port = _start_on_free_port(
            "prometheus", workdir, argv, lambda p: _ready_http(f"http://{LOCALHOST}:{p}/-/ready")
        )
        server = PrometheusServer(process, port, workdir)
        stack.push(server.stop)
        return server

    return start, stack


def _mkdtemp(base: Path, prefix: str) -> str:
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"{prefix}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return str(path)


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[PrometheusFactory]:
    """Factory: start a Prometheus for this test; stopped when the test ends.

    Call with a whole prometheus.yml text, or with keyword arguments of `prometheus_config`
    plus `rules=` (a rule file's text):

        prom = prometheus_server(scrape_targets=["127.0.0.1:8000"], rules=RULES_YAML,
                                 alertmanagers=[am])
        prom.wait_for_targets_up()
        assert prom.wait_for_value("up") == 1
        prom.wait_for_alert("ModelDown")
    """
    start, stack = _prometheus_factory(tmp_path / "prometheus")
    try:
        yield start
    finally:
        stack.close()


@pytest.fixture(scope="module")
def module_prometheus_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrometheusFactory]:
    """Same factory as `prometheus_server`, but servers live until the test module ends.

    Share one server between the tests of a module and `reload(...)` it with their config.
    """
    start, stack = _prometheus_factory(tmp_path_factory.mktemp("prometheus"))
    try:
        yield start
    finally:
        stack.close()


# --------------------------------------------------------------------------------------------
# Alertmanager and a webhook receiver
# --------------------------------------------------------------------------------------------


def alertmanager_config(
    webhook_url: str | None = None,
    *,
    group_wait: str = "0s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
    send_resolved: bool = True,
) -> str:
    """An alertmanager.yml text routing everything to one webhook (or nowhere), fast timings."""
    receiver: dict[str, Any] = {"name": "default"}
    if webhook_url is not None:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": send_resolved}]
    config = {
        "route": {
            "receiver": "default",
            "group_by": ["alertname"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [receiver],
    }
    return json.dumps(config, indent=2)


class AlertmanagerServer:
    """An Alertmanager on 127.0.0.1 (no cluster port) with its v2 API wrapped."""

    def __init__(self, process: ManagedProcess, port: int, workdir: Path) -> None:
        self.process = process
        self.port = port
        self.host = LOCALHOST
        self.workdir = workdir
        self.url = f"http://{LOCALHOST}:{port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "alertmanager.yml"

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """POST /api/v2/alerts: each alert has `labels` (with alertname), maybe `annotations`."""
        _json_request("POST", f"{self.url}/api/v2/alerts", list(alerts))

    def alerts(self, *, active: bool = True, silenced: bool = True) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: each with `labels`, `annotations`, `status` {state}, `receivers`."""
        params = urllib.parse.urlencode({"active": active, "silenced": silenced}).lower()
        alerts: list[dict[str, Any]] = _json_request("GET", f"{self.url}/api/v2/alerts?{params}")
        return alerts

    def wait_for_alert(self, name: str, timeout: float = 15.0) -> dict[str, Any]:
        """Wait until an alert with alertname `name` is listed; return it."""

        def find() -> dict[str, Any] | None:
            return next((a for a in self.alerts() if a["labels"].get("alertname") == name), None)

        return wait_until(find, timeout=timeout, message=f"alert {name} in Alertmanager")

    def reload(self, config: str | None = None) -> None:
        """Optionally rewrite alertmanager.yml, then POST /-/reload."""
        if config is not None:
            self.config_path.write_text(config)
        status, body = http_request("POST", f"{self.url}/-/reload", timeout=10.0)
        if status != 200:
            raise AssertionError(f"Alertmanager reload failed: HTTP {status}: {body.decode()}")

    def stop(self) -> None:
        self.process.stop()


AlertmanagerFactory = Callable[..., AlertmanagerServer]


def _alertmanager_factory(base: Path) -> tuple[AlertmanagerFactory, _Stack]:
    stack = _Stack()

    def start(config: str | None = None) -> AlertmanagerServer:
        binary = require_server("prometheus-alertmanager")
        workdir = Path(_mkdtemp(base, "alertmanager"))
        (workdir / "alertmanager.yml").write_text(config or alertmanager_config())

        def argv(port: int) -> list[str]:
            return [
                binary,
                f"--config.file={workdir / 'alertmanager.yml'}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address={LOCALHOST}:{port}",
                f"--web.external-url=http://{LOCALHOST}:{port}",
                "--cluster.listen-address=",  # otherwise gossip binds all interfaces on :9094
            ]

        process, port = _start_on_free_port(
            "alertmanager", workdir, argv, lambda p: _ready_http(f"http://{LOCALHOST}:{p}/-/ready")
        )
        server = AlertmanagerServer(process, port, workdir)
        stack.push(server.stop)
        return server

    return start, stack


@pytest.fixture
def alertmanager_server(tmp_path: Path) -> Iterator[AlertmanagerFactory]:
    """Factory: start an Alertmanager with a config text (default: route to nowhere).

    hook = webhook_receiver
    am = alertmanager_server(alertmanager_config(hook.url))
    prom = prometheus_server(rules=RULES, alertmanagers=[am])   # start AM first
    hook.wait_for_alert("ModelDown")
    """
    start, stack = _alertmanager_factory(tmp_path / "alertmanager")
    try:
        yield start
    finally:
        stack.close()


@pytest.fixture(scope="module")
def module_alertmanager_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AlertmanagerFactory]:
    """Same factory as `alertmanager_server`, servers living until the test module ends."""
    start, stack = _alertmanager_factory(tmp_path_factory.mktemp("alertmanager"))
    try:
        yield start
    finally:
        stack.close()


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 storing every JSON body POSTed to it (any path)."""

    def __init__(self) -> None:
        self._payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver._payloads.append(json.loads(body or b"null"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.url = f"http://{LOCALHOST}:{self.port}/webhook"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def payloads(self) -> list[dict[str, Any]]:
        """Every payload so far (Alertmanager webhook format 4: status, alerts, groupLabels...)."""
        with self._lock:
            return list(self._payloads)

    def alerts(self) -> list[dict[str, Any]]:
        """All alerts of all payloads, in order, each with `status`, `labels`, `annotations`."""
        return [alert for payload in self.payloads() for alert in payload.get("alerts", [])]

    def wait_for_alert(
        self, name: str, status: str = "firing", timeout: float = 30.0
    ) -> dict[str, Any]:
        """Wait until an alert `name` with `status` ("firing"/"resolved") arrived; return it."""

        def find() -> dict[str, Any] | None:
            return next(
                (
                    a
                    for a in self.alerts()
                    if a["labels"].get("alertname") == name and a["status"] == status
                ),
                None,
            )

        return wait_until(find, timeout=timeout, message=f"webhook alert {name} {status}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """An Alertmanager webhook target: `.url`, `.payloads()`, `.alerts()`, `.wait_for_alert()`."""
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


# --------------------------------------------------------------------------------------------
# Celery
# --------------------------------------------------------------------------------------------

BROKER_ENV = "MODELWATCH_TEST_BROKER_URL"


class CeleryWorker:
    """A running `celery -A app worker`; `stop()` makes a warm shutdown and returns its output."""

    def __init__(
        self, process: ManagedProcess, app: str, hostname: str, broker_url: str, pool: str
    ) -> None:
        self.process = process
        self.app = app
        self.hostname = hostname
        self.broker_url = broker_url
        self.pool = pool

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        """The worker's log (stdout and stderr) so far."""
        return self.process.output

    def children(self) -> list[int]:
        """PIDs of the worker's child processes (the prefork pool)."""
        return _descendants(self.pid)

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """A Celery app bound to this worker's broker and result backend, closed at exit."""
        from celery import Celery

        app = Celery("modelwatch-test-client", broker=self.broker_url, backend=self.broker_url)
        try:
            yield app
        finally:
            app.close()

    def call(self, task: str, *args: Any, timeout: float = 15.0, **kwargs: Any) -> Any:
        """Send task `task` by name and wait for its result (raises the task's error)."""
        with self.client() as app:
            result = app.send_task(task, args=args, kwargs=kwargs)
            try:
                return result.get(timeout=timeout)
            finally:
                result.forget()

    def stop(self, timeout: float = 30.0) -> str:
        """Warm shutdown (SIGTERM to the main PID: running tasks finish); returns the output.

        After `timeout` s the worker is killed. Its pool children are checked to be gone.
        """
        self.process.stop(signal.SIGTERM, timeout)
        if self.process.leaked:
            raise AssertionError(
                f"celery worker {self.pid} left children running: {self.process.leaked}"
            )
        return self.output


CeleryWorkerFactory = Callable[..., CeleryWorker]


def _stop_if_running(worker: CeleryWorker) -> None:
    if worker.process.running:
        worker.stop()


@pytest.fixture
def celery_worker(redis_server: RedisServer, tmp_path: Path) -> Iterator[CeleryWorkerFactory]:
    """Factory: start a real Celery worker against the Redis broker; stopped after the test.

    `celery_worker(app="support.celery_app_smoke", pool="solo", concurrency=None,
    extra_args=(), env=None, broker_url=None, ready_timeout=30.0)`. The broker and result
    backend default to a fresh Redis database and are passed in the environment as
    CELERY_BROKER_URL, CELERY_RESULT_BACKEND and MODELWATCH_TEST_BROKER_URL; tests/ is on
    PYTHONPATH so modules under tests/support import as `support.<name>`.

        worker = celery_worker(pool="prefork", concurrency=2)
        assert worker.call("smoke.add", 2, 3) == 5
        output = worker.stop()   # warm shutdown; optional, the fixture stops it too
    """
    python = require_server("celery")
    stack = _Stack()
    counter = itertools.count(1)

    def start(
        app: str = "support.celery_app_smoke",
        *,
        pool: str = "solo",
        concurrency: int | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        broker_url: str | None = None,
        ready_timeout: float = 30.0,
    ) -> CeleryWorker:
        url = broker_url or redis_server.fresh_url()
        hostname = f"test{next(counter)}-{uuid.uuid4().hex[:6]}@{LOCALHOST}"
        argv = [
            python, "-m", "celery", "-A", app, "worker",
            f"--pool={pool}", "--loglevel=INFO", f"--hostname={hostname}",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        if concurrency is not None:
            argv.append(f"--concurrency={concurrency}")
        argv.extend(extra_args)
        python_path = os.pathsep.join(
            p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p
        )
        full_env = {
            **os.environ,
            "PYTHONPATH": python_path,
            "PYTHONUNBUFFERED": "1",
            "CELERY_BROKER_URL": url,
            "CELERY_RESULT_BACKEND": url,
            BROKER_ENV: url,
            **(env or {}),
        }
        log = tmp_path / f"celery-{hostname.split('@', maxsplit=1)[0]}.log"
        process = spawn("celery", argv, log, env=full_env, cwd=TESTS_DIR)
        worker = CeleryWorker(process, app, hostname, url, pool)
        stack.push(lambda: _stop_if_running(worker))
        try:
            wait_until(
                lambda: not process.running or f"{hostname} ready." in process.output,
                timeout=ready_timeout,
                message=f"celery worker {hostname} to be ready",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- worker output ---\n{process.output}") from None
        if not process.running:
            raise AssertionError(
                f"celery worker exited with status {process.popen.returncode}:\n{process.output}"
            )
        return worker

    try:
        yield start
    finally:
        stack.close()
