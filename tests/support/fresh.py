"""Run code in a fresh interpreter (OpenTelemetry's global providers can be set once per
process), with modelwatch's and OTel's environment variables cleared unless given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CLEAN_ENV_PREFIXES = ("MODELWATCH_", "OTEL_")


@dataclass
class Ran:
    """What the fresh interpreter printed: its last JSON line, and its stderr."""

    out: Any
    stderr: str
    stdout: str


def run_fresh(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> Ran:
    """Run ``code`` in a fresh interpreter; it must exit 0 and print one JSON line last."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(CLEAN_ENV_PREFIXES)}
    child_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return Ran(json.loads(lines[-1]) if lines else None, proc.stderr, proc.stdout)
