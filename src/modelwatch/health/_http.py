"""The HTTP side of the health registry, shared by the ASGI and WSGI apps.

One function, :func:`respond`, maps (method, route, Authorization header) to a complete
response, so both apps serve exactly the same routes, JSON and status codes
(docs/health.md, *HTTP endpoints*).
It only reads cached results: no request ever waits for a probe.
"""

from __future__ import annotations

import hmac
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

from modelwatch import semconv
from modelwatch._safety import report_internal_error
from modelwatch.health.history import MAX_WINDOW_S

if TYPE_CHECKING:
    from modelwatch.health.registry import Health
    from modelwatch.health.results import Kind

#: The routes docs/health.md lists (``/checks/{name}`` is matched by prefix).
ROUTES: Final[tuple[str, ...]] = (
    "/",
    "/live",
    "/ready",
    "/models",
    "/dependencies",
    "/analysis",
    "/checks/{name}",
    "/history",
    "/graph",
)
_BY_KIND: Final[dict[str, Kind]] = {
    "/models": semconv.HEALTH_KIND_MODEL,
    "/dependencies": semconv.HEALTH_KIND_DEPENDENCY,
    "/analysis": semconv.HEALTH_KIND_ANALYSIS,
}
_CHECKS_PREFIX: Final = "/checks/"
_REASONS: Final[dict[int, str]] = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Response:
    """A finished HTTP response: status code, headers and body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def reason(self) -> str:
        """The reason phrase for the status line."""
        return _REASONS.get(self.status, "")


def _json(status: int, payload: Any, extra: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("cache-control", "no-store"),
        *(extra or []),
    ]
    return Response(status, headers, body)


def check_token(token: str | None) -> str | None:
    """Validate a bearer token given to ``asgi()``/``wsgi()`` (``None`` means no auth)."""
    if token is None:
        return None
    if not isinstance(token, str) or not token or any(c.isspace() for c in token):
        raise ValueError("token must be a non-empty string without whitespace")
    return token


def _authorized(token: str | None, authorization: str | None) -> bool:
    if token is None:
        return True
    if not authorization:
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


def route_of(path: str, root_path: str) -> str:
    """The route inside the app: ``path`` without the mount prefix ``root_path``.

    Starlette's ``Mount`` and uvicorn's ``--root-path`` leave the full path in ``path`` and
    put the prefix in ``root_path``; older servers strip it themselves. Both work here.
    """
    root = root_path.rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path or "/"


def respond(
    health: Health,
    method: str,
    route: str,
    authorization: str | None,
    token: str | None,
    *,
    query: str = "",
) -> Response:
    """The response to ``method route?query`` (``route`` already relative to the mount
    point; ``query`` the raw query string, read by ``/history`` only)."""
    try:
        method = method.upper()
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": "method not allowed"}, [("allow", "GET, HEAD")])
        if route == "/live":  # liveness says only that the process answers: no auth, no checks
            return _json(200, {"status": "ok"})
        if not _authorized(token, authorization):
            return _json(
                401, {"error": "unauthorized"}, [("www-authenticate", 'Bearer realm="modelwatch"')]
            )
        return _route(health, route, query)
    except Exception as exc:  # never a stack trace on the wire
        report_internal_error("health.http", exc)
        return _json(500, {"error": "internal error"})


def _history(health: Health, query: str) -> Response:
    """``GET /history[?window_s=N]``: 400 for anything but one window of 0 < N <= 30 d."""
    params = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - {"window_s"})
    if unknown:
        return _json(
            400,
            {"error": "unknown query parameter", "parameters": unknown, "accepted": ["window_s"]},
        )
    window_s: float | None = None
    if "window_s" in params:
        values = params["window_s"]
        try:
            window_s = float(values[0]) if len(values) == 1 else math.nan
        except ValueError:
            window_s = math.nan
        if not (math.isfinite(window_s) and 0 < window_s <= MAX_WINDOW_S):
            return _json(
                400,
                {
                    "error": f"window_s must be one number of seconds, > 0 and at most "
                    f"{MAX_WINDOW_S:g} (30 days)",
                    "parameter": "window_s",
                },
            )
    return _json(200, health.history(window_s))


def _route(health: Health, route: str, query: str) -> Response:
    """The answer of an authorised ``GET``/``HEAD`` of ``route``."""
    if route in ("/", "/ready"):
        report = health.report()
        return _json(report.http_status, report.to_dict())
    if route == "/history":
        return _history(health, query)
    if route == "/graph":
        return _json(200, health.graph())
    kind = _BY_KIND.get(route)
    if kind is not None:
        report = health.report(kind=kind)
        return _json(report.http_status, report.to_dict())
    if route.startswith(_CHECKS_PREFIX) and len(route) > len(_CHECKS_PREFIX):
        name = route[len(_CHECKS_PREFIX) :]
        found = health.report().check(name)
        if found is None:
            return _json(404, {"error": "no such check", "name": name})
        return _json(503 if found.status == "down" else 200, found.to_dict())
    return _json(404, {"error": "not found", "routes": list(ROUTES)})
