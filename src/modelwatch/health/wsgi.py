"""The health endpoints as a WSGI app (Flask, Django, or any WSGI server)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from modelwatch.health._http import Response, check_token, respond, route_of

if TYPE_CHECKING:
    from modelwatch.health.registry import Health

StartResponse = Callable[..., Any]


class HealthWSGI:
    """Serves the same routes and JSON as :class:`~modelwatch.health.asgi.HealthASGI`, for
    WSGI. Build it with :meth:`Health.wsgi` and mount it under a prefix, e.g. in Flask::

        from werkzeug.middleware.dispatcher import DispatcherMiddleware
        app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/health": health.wsgi()})

    The mount prefix arrives as ``SCRIPT_NAME`` and the route as ``PATH_INFO``.
    """

    def __init__(self, health: Health, *, token: str | None = None) -> None:
        self.health = health
        self._token = check_token(token)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI (PEP 3333) entry point."""
        # PEP 3333 hands the path over as latin-1 text of the raw bytes; names are UTF-8
        raw = environ.get("PATH_INFO") or "/"
        try:
            path = raw.encode("latin-1").decode("utf-8")
        except UnicodeError:
            path = raw
        method = environ.get("REQUEST_METHOD", "GET")
        response = self._answer(
            method,
            route_of(path, ""),
            environ.get("HTTP_AUTHORIZATION"),
            environ.get("QUERY_STRING") or "",
        )
        start_response(f"{response.status} {response.reason}", response.headers)
        return [b"" if method.upper() == "HEAD" else response.body]

    def _answer(
        self, method: str, route: str, authorization: str | None, query: str = ""
    ) -> Response:
        return respond(self.health, method, route, authorization, self._token, query=query)
