"""The health endpoints as an ASGI app (Starlette, FastAPI, or any ASGI server)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from modelwatch.health._http import Response, check_token, respond, route_of

if TYPE_CHECKING:
    from modelwatch.health.registry import Health

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class HealthASGI:
    """Serves ``/``, ``/live``, ``/ready``, ``/models``, ``/dependencies``, ``/analysis`` and
    ``/checks/{name}`` from a :class:`~modelwatch.Health` (see docs/health.md, *HTTP
    endpoints*). Build it with :meth:`Health.asgi`.

    Works mounted (``app.mount("/health", health.asgi())``: the mount prefix arrives as
    ``root_path`` and is stripped) and stand-alone (``uvicorn.run(health.asgi())``; lifespan
    messages are acknowledged, and probing is left to :meth:`Health.start`).
    """

    def __init__(self, health: Health, *, token: str | None = None) -> None:
        self.health = health
        self._token = check_token(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI 3 entry point."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] == "websocket":  # mounted apps may be offered one: refuse politely
            await send({"type": "websocket.close", "code": 1003})
            return
        if scope["type"] != "http":
            return
        authorization = None
        for key, value in scope.get("headers") or ():
            if key.lower() == b"authorization":
                authorization = value.decode("latin-1")
                break
        route = route_of(scope.get("path") or "/", scope.get("root_path") or "")
        query = (scope.get("query_string") or b"").decode("latin-1")
        response = self._answer(scope.get("method", "GET"), route, authorization, query)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(k.encode(), v.encode()) for k, v in response.headers],
            }
        )
        body = b"" if scope.get("method", "GET").upper() == "HEAD" else response.body
        await send({"type": "http.response.body", "body": body})

    def _answer(
        self, method: str, route: str, authorization: str | None, query: str = ""
    ) -> Response:
        return respond(self.health, method, route, authorization, self._token, query=query)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
