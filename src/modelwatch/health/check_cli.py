"""``modelwatch check URL``: query a health endpoint, print its checks, exit by its status.

Exit codes, for cron jobs and external monitors: 0 ok, 1 degraded, 2 down — and 2 when the
endpoint cannot be reached or does not answer with a health report. Uses only the standard
library, so it works wherever modelwatch is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any, Final, TextIO

EXIT_OK: Final = 0
EXIT_DEGRADED: Final = 1
EXIT_DOWN: Final = 2
_EXIT_BY_STATUS: Final = {"ok": EXIT_OK, "degraded": EXIT_DEGRADED, "down": EXIT_DOWN}
TOKEN_ENV: Final = "MODELWATCH_HEALTH_TOKEN"  # noqa: S105 - a variable name, not a secret


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelwatch check",
        description="Query a modelwatch health endpoint and print its checks. "
        "Exit 0 if ok, 1 if degraded, 2 if down or unreachable.",
    )
    parser.add_argument("url", help="the health endpoint, e.g. http://127.0.0.1:8000/health/")
    parser.add_argument(
        "--token", help=f"bearer token (default: ${TOKEN_ENV} if set)", default=None
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON instead")
    return parser


def fetch(url: str, *, token: str | None, timeout_s: float) -> tuple[int, dict[str, Any]]:
    """GET ``url`` and return (HTTP status, JSON body); 503 bodies are answers too.

    Raises ``OSError`` when unreachable and ``ValueError`` when the body is no report.
    """
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, headers={"accept": "application/json"})  # noqa: S310
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
        error.close()
    if status == 401:
        raise PermissionError("the endpoint wants a bearer token (use --token)")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"HTTP {status} without a JSON body") from exc
    if not isinstance(body, dict) or body.get("status") not in _EXIT_BY_STATUS:
        raise ValueError(f"HTTP {status}: the body is not a modelwatch health report")
    return status, body


def render(body: dict[str, Any], out: TextIO) -> None:
    """Print a report as a table of checks under a one-line summary."""
    checks = body.get("checks") or []
    rows = [("CHECK", "KIND", "STATUS", "LATENCY", "CRITICAL", "ERROR")]
    for check in checks if isinstance(checks, list) else []:
        latency = check.get("latency_s")
        rows.append(
            (
                str(check.get("name", "")),
                str(check.get("kind", "")),
                str(check.get("status", "")),
                "-" if latency is None else f"{latency * 1000:.1f} ms",
                "yes" if check.get("critical") else "no",
                str(check.get("error") or ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    score = body.get("score")
    out.write(
        f"status: {body.get('status')}  score: {score}  checked_at: {body.get('checked_at')}\n"
    )
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``modelwatch check``; returns 0 ok, 1 degraded, 2 down or unreachable."""
    args = _parser().parse_args(argv)
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    try:
        _, body = fetch(args.url, token=token, timeout_s=args.timeout)
    except PermissionError as exc:
        print(f"modelwatch check: {args.url}: {exc}", file=sys.stderr)
        return EXIT_DOWN
    except ValueError as exc:
        print(f"modelwatch check: {args.url}: {exc}", file=sys.stderr)
        return EXIT_DOWN
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc
        print(f"modelwatch check: cannot reach {args.url}: {reason}", file=sys.stderr)
        return EXIT_DOWN
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        render(body, sys.stdout)
    return _EXIT_BY_STATUS[body["status"]]
