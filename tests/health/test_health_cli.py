"""``modelwatch check URL``: the table it prints and its exit codes, against a real server."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from modelwatch.cli import main as modelwatch_main
from modelwatch.health import Health
from modelwatch.health.check_cli import main

TOKEN = "cli-token-123"


class Probe:
    def __init__(self) -> None:
        self.answer: Any = True

    def __call__(self) -> Any:
        return self.answer


@pytest.fixture
def critical() -> Probe:
    return Probe()


@pytest.fixture
def optional() -> Probe:
    return Probe()


@pytest.fixture
def health(make_health: Callable[..., Health], critical: Probe, optional: Probe) -> Health:
    health = make_health(flap_threshold=1)
    health.add("google/flan-t5-large", probe=critical, critical=True)
    health.add("redis", probe=optional, kind="dependency")
    health.run_once()
    return health


@pytest.fixture
def url(health: Health, serve_wsgi: Any) -> Iterator[str]:
    with serve_wsgi(health.wsgi()) as base:
        yield base + "/"


def table(out: str) -> str:
    """The command's output, without the structlog lines the probes logged meanwhile."""
    return out[out.index("status: ") :]


def test_exit_codes_follow_the_overall_status(
    url: str,
    health: Health,
    critical: Probe,
    optional: Probe,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([url]) == 0
    out = table(capsys.readouterr().out)
    lines = out.splitlines()
    assert lines[0].startswith("status: ok  score: 1.0  checked_at: ")
    assert lines[1].split() == ["CHECK", "KIND", "STATUS", "LATENCY", "CRITICAL", "ERROR"]
    assert lines[2].split()[:3] == ["google/flan-t5-large", "model", "ok"]
    assert lines[2].split()[-1] == "yes"
    assert lines[3].split()[:3] == ["redis", "dependency", "ok"]

    optional.answer = False
    health.run_once()
    assert main([url]) == 1
    out = table(capsys.readouterr().out)
    assert out.startswith("status: degraded")
    assert "probe returned False" in out

    critical.answer = False
    health.run_once()
    assert main([url]) == 2  # the endpoint answers 503 and the report still prints
    assert table(capsys.readouterr().out).startswith("status: down")


def test_json_output_and_the_top_level_dispatcher(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert modelwatch_main(["check", "--json", url]) == 0
    out = capsys.readouterr().out
    assert '"status": "ok"' in out
    assert '"checks": [' in out


def test_unreachable_endpoint_exits_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main([f"http://127.0.0.1:{port}/health", "--timeout", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"modelwatch check: cannot reach http://127.0.0.1:{port}/health: ")
    assert "refused" in err.lower()


def test_not_a_health_endpoint_exits_2(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([url + "nowhere"]) == 2
    assert "not a modelwatch health report" in capsys.readouterr().err
    assert main(["ftp://example.invalid/health"]) == 2
    assert "not an http(s) URL" in capsys.readouterr().err


def test_token_from_option_or_environment(
    health: Health,
    serve_wsgi: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with serve_wsgi(health.wsgi(token=TOKEN)) as base:
        assert main([base]) == 2
        assert "bearer token" in capsys.readouterr().err
        assert main([base, "--token", TOKEN]) == 0
        monkeypatch.setenv("MODELWATCH_HEALTH_TOKEN", TOKEN)
        assert main([base]) == 0
    assert TOKEN not in capsys.readouterr().out


def test_the_installed_command_line_runs_as_a_subprocess(
    url: str, health: Health, optional: Probe
) -> None:
    optional.answer = "degraded"
    health.run_once()
    done = subprocess.run(
        [sys.executable, "-m", "modelwatch.cli", "check", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "redis" in done.stdout
    assert "degraded" in done.stdout
