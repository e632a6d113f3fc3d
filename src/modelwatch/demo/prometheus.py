"""A real Prometheus for the demo: found (or installed, as root), started on 127.0.0.1, stopped.

The demo's alerts are the generated rules evaluated by Prometheus itself, scraping the demo's
``/metrics`` endpoint: no rule is rewritten in Python, so a new rule shows up in the demo with
no demo code. Prometheus is the Debian ``prometheus`` package; when it is missing and the demo
runs as root with ``apt-get`` (a fresh machine, ``make demo``), it is installed first, with a
deny-all ``policy-rc.d`` so that the package's service does not start (and bind 0.0.0.0), as
``tests/servers_setup.py`` does for the test suite.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TextIO

__all__ = ["Prometheus", "PrometheusError", "find_or_install"]

HOST: Final = "127.0.0.1"
_DIRS: Final = ("/usr/bin", "/usr/sbin", "/usr/local/bin")
_POLICY_RC_D: Final = Path("/usr/sbin/policy-rc.d")
_APT_TIMEOUT_S: Final = 300
_READY_TIMEOUT_S: Final = 20.0


class PrometheusError(Exception):
    """Prometheus could not be found, installed or started (the message says why)."""


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(_DIRS))


def _apt_install(apt_get: str, package: str) -> None:
    """``apt-get update && apt-get install package`` with no service auto-started."""
    wrote_policy = not _POLICY_RC_D.exists()
    if wrote_policy:
        _POLICY_RC_D.write_text("#!/bin/sh\n# Written by modelwatch demo.\nexit 101\n")
        _POLICY_RC_D.chmod(0o755)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        for args in (["update"], ["install", "-y", "--no-install-recommends", package]):
            subprocess.run(  # noqa: S603 - a fixed command line
                [apt_get, "-o", "DPkg::Lock::Timeout=120", *args],
                check=True,
                capture_output=True,
                env=env,
                timeout=_APT_TIMEOUT_S,
            )
    finally:
        if wrote_policy:
            _POLICY_RC_D.unlink(missing_ok=True)


def find_or_install(out: TextIO) -> str:
    """The ``prometheus`` binary's path; installs the Debian package first when it is missing
    and this is root on a machine with ``apt-get``.

    Raises:
        PrometheusError: not found and not installable here.
    """
    found = _which("prometheus")
    if found:
        return found
    apt_get = _which("apt-get")
    if os.geteuid() != 0 or apt_get is None:
        raise PrometheusError(
            "no `prometheus` binary (install the Debian package `prometheus`, "
            "or run the demo as root to let it install it)"
        )
    out.write("  installing Prometheus (apt-get install prometheus, ~10 s, once)...\n")
    out.flush()
    try:
        _apt_install(apt_get, "prometheus")
    except (OSError, subprocess.SubprocessError) as exc:
        raise PrometheusError(f"installing the `prometheus` package failed: {exc}") from exc
    found = _which("prometheus")
    if not found:
        raise PrometheusError("installed the `prometheus` package, but found no binary")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Prometheus:
    """One Prometheus process on 127.0.0.1 with a temporary data directory.

    Args:
        binary: the ``prometheus`` executable.
        config: the ``prometheus.yml`` text (JSON is YAML).
        files: other files to write next to it (rule files), by name.
    """

    def __init__(self, binary: str, config: str, files: dict[str, str]) -> None:
        self._binary = binary
        self._dir = Path(tempfile.mkdtemp(prefix="modelwatch-demo-prometheus-"))
        for name, text in {"prometheus.yml": config, **files}.items():
            (self._dir / name).write_text(text)
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def directory(self) -> Path:
        """Where the configuration and rule files are (rule paths in the config are relative
        to it)."""
        return self._dir

    @property
    def url(self) -> str:
        """Base URL of the web UI and API."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        """Start on a free port and wait until ready.

        Raises:
            PrometheusError: it did not start, or was not ready in time.
        """
        self.port = _free_port()
        log = (self._dir / "prometheus.log").open("wb")
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - the prometheus binary, fixed flags
                self._command(),
                cwd=self._dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise PrometheusError(f"cannot run {self._binary}: {exc}") from exc
        finally:
            log.close()
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = (self._dir / "prometheus.log").read_text(errors="replace")[-400:]
                raise PrometheusError(f"Prometheus exited at start: {tail.strip()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0),  # noqa: S310
            ):
                return
            time.sleep(0.1)
        self.stop()
        raise PrometheusError(f"Prometheus was not ready within {_READY_TIMEOUT_S:g} s")

    def _command(self) -> Sequence[str]:
        return [
            self._binary,
            "--config.file=prometheus.yml",
            f"--storage.tsdb.path={self._dir / 'data'}",
            f"--web.listen-address={HOST}:{self.port}",
            f"--web.external-url={self.url}",
            "--web.enable-lifecycle",
            "--rules.alert.resend-delay=1s",
            "--log.level=warn",
        ]

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>?<params>``'s ``data``.

        Raises:
            PrometheusError: no answer, or an error answer.
        """
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=3.0) as r:  # noqa: S310
                reply = json.loads(r.read())
        except (OSError, ValueError) as exc:
            raise PrometheusError(f"Prometheus API {path}: {exc}") from exc
        if reply.get("status") != "success":
            raise PrometheusError(f"Prometheus API {path}: {reply.get('error')}")
        return reply["data"]

    def wait_for_first_scrape(self, count: int = 1, timeout_s: float = _READY_TIMEOUT_S) -> None:
        """Wait until ``count`` targets have each been scraped once (Prometheus applies new targets
        every 5 s, so the first scrape comes up to 5 s after the start).

        Raises:
            PrometheusError: a target was not scraped in time.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            targets = self.api("targets", state="active")["activeTargets"]
            if len(targets) >= count and all(t.get("health") == "up" for t in targets):
                return
            time.sleep(0.2)
        raise PrometheusError(f"Prometheus did not scrape the demo within {timeout_s:g} s")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and remove its directory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)
