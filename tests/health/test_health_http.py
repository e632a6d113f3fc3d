"""The endpoints over real HTTP: uvicorn (stand-alone, Starlette and FastAPI mounts, behind a
root path) and a WSGI server (stand-alone and mounted in Flask), with httpx as the client."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from modelwatch.health import Health

CHECK_KEYS = {
    "name",
    "kind",
    "status",
    "latency_s",
    "checked_at",
    "error",
    "critical",
    "weight",
    "circuit",
    "cause",
    "depends_on",
}
SECRET = "sk-proj-abcdefghijklmnop1234"
TOKEN = "s3cret-token"


class Switch:
    """A probe whose answer the test flips."""

    def __init__(self, healthy: bool = True) -> None:
        self.healthy = healthy

    def __call__(self) -> bool:
        if not self.healthy:
            raise RuntimeError(f"upstream said 401 for api_key={SECRET}")
        return True


@pytest.fixture
def probes() -> dict[str, Switch]:
    return {
        "flan": Switch(),
        "bart": Switch(healthy=False),
        "review": Switch(),
        "redis": Switch(),
    }


@pytest.fixture
def health(make_health: Callable[..., Health], probes: dict[str, Switch]) -> Health:
    health = make_health(flap_threshold=1)
    health.add("google/flan-t5-large", probe=probes["flan"], critical=True, weight=2.0)
    health.add("facebook/bart-large-cnn", probe=probes["bart"], kind="model")
    health.add("code_review", probe=probes["review"], kind="analysis")
    health.add("redis", probe=probes["redis"], kind="dependency")
    health.run_once()
    return health


def _flask(health: Health, token: str | None) -> Any:
    app = Flask("host")

    @app.get("/")
    def index() -> str:
        return "host app"

    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/health": health.wsgi(token=token)}
    )
    return app


def _starlette(health: Health, token: str | None) -> Any:
    async def index(request: Any) -> PlainTextResponse:
        return PlainTextResponse("host app")

    return Starlette(routes=[Route("/", index), Mount("/health", app=health.asgi(token=token))])


def _fastapi(health: Health, token: str | None, **kwargs: Any) -> Any:
    app = FastAPI(**kwargs)

    @app.get("/")
    def index() -> str:
        return "host app"

    app.mount("/health", health.asgi(token=token))
    return app


Server = Callable[[Health, str | None], AbstractContextManager[str]]


def _servers(serve_asgi: Any, serve_wsgi: Any) -> dict[str, Server]:
    @contextmanager
    def uvicorn_alone(h: Health, token: str | None) -> Iterator[str]:
        with serve_asgi(h.asgi(token=token), lifespan="on") as base:  # lifespan must work
            yield base

    @contextmanager
    def starlette_mount(h: Health, token: str | None) -> Iterator[str]:
        with serve_asgi(_starlette(h, token)) as base:
            yield base + "/health"

    @contextmanager
    def fastapi_mount(h: Health, token: str | None) -> Iterator[str]:
        with serve_asgi(_fastapi(h, token)) as base:
            yield base + "/health"

    @contextmanager
    def fastapi_behind_proxy(h: Health, token: str | None) -> Iterator[str]:
        # a proxy strips /api; uvicorn is told so with --root-path
        with serve_asgi(_fastapi(h, token), root_path="/api") as base:
            yield base + "/health"

    @contextmanager
    def wsgi_alone(h: Health, token: str | None) -> Iterator[str]:
        with serve_wsgi(h.wsgi(token=token)) as base:
            yield base

    @contextmanager
    def flask_mount(h: Health, token: str | None) -> Iterator[str]:
        with serve_wsgi(_flask(h, token)) as base:
            yield base + "/health"

    return {
        "uvicorn": uvicorn_alone,
        "starlette-mount": starlette_mount,
        "fastapi-mount": fastapi_mount,
        "fastapi-root-path": fastapi_behind_proxy,
        "wsgiref": wsgi_alone,
        "flask-mount": flask_mount,
    }


SERVERS = pytest.mark.parametrize(
    "server_name",
    [
        "uvicorn",
        "starlette-mount",
        "fastapi-mount",
        "fastapi-root-path",
        "wsgiref",
        "flask-mount",
    ],
)


@pytest.fixture
def served(
    request: pytest.FixtureRequest, serve_asgi: Any, serve_wsgi: Any
) -> Callable[..., AbstractContextManager[str]]:
    return _servers(serve_asgi, serve_wsgi)[request.node.callspec.params["server_name"]]


def _assert_report_shape(body: dict[str, Any]) -> None:
    assert set(body) == {"status", "score", "checked_at", "checks"}
    assert body["status"] in {"ok", "degraded", "down"}
    assert 0.0 <= body["score"] <= 1.0
    datetime.fromisoformat(body["checked_at"])
    for check in body["checks"]:
        assert set(check) == CHECK_KEYS
        assert check["kind"] in {"model", "analysis", "dependency"}
        assert check["status"] in {"ok", "degraded", "down", "unknown"}


@SERVERS
def test_every_route_answers_with_the_design_json_and_codes(
    served: Any, health: Health, probes: dict[str, Switch], server_name: str
) -> None:
    with served(health, None) as base, httpx.Client(base_url=base, timeout=5.0) as client:
        overall = client.get("/")
        assert overall.status_code == 200
        assert overall.headers["content-type"] == "application/json"
        assert overall.headers["cache-control"] == "no-store"
        body = overall.json()
        _assert_report_shape(body)
        assert body["status"] == "degraded"  # bart (not critical) is down
        assert body["score"] == 0.8  # (2 + 0 + 1 + 1) / 5
        assert [c["name"] for c in body["checks"]] == [
            "google/flan-t5-large",
            "facebook/bart-large-cnn",
            "code_review",
            "redis",
        ]

        assert client.get("/live").json() == {"status": "ok"}
        ready = client.get("/ready")
        assert ready.status_code == 200
        _assert_report_shape(ready.json())

        models = client.get("/models").json()
        assert [c["name"] for c in models["checks"]] == [
            "google/flan-t5-large",
            "facebook/bart-large-cnn",
        ]
        assert [c["name"] for c in client.get("/dependencies").json()["checks"]] == ["redis"]
        analysis = client.get("/analysis/")  # a trailing slash is fine
        assert [c["name"] for c in analysis.json()["checks"]] == ["code_review"]

        flan = client.get("/checks/google/flan-t5-large")  # names may contain slashes
        assert flan.status_code == 200
        assert flan.json()["name"] == "google/flan-t5-large"
        assert flan.json()["critical"] is True
        assert flan.json()["weight"] == 2.0
        assert set(flan.json()) == CHECK_KEYS

        bart = client.get("/checks/facebook/bart-large-cnn")
        assert bart.status_code == 503
        assert bart.json()["status"] == "down"
        assert bart.json()["error"] == "RuntimeError: upstream said 401 for api_key=[REDACTED]"
        assert SECRET not in bart.text
        assert "Traceback" not in bart.text

        missing = client.get("/checks/nope")
        assert (missing.status_code, missing.json()["error"]) == (404, "no such check")
        assert client.get("/nowhere").status_code == 404
        wrong = client.post("/")
        assert (wrong.status_code, wrong.headers["allow"]) == (405, "GET, HEAD")
        head = client.head("/")
        assert (head.status_code, head.content) == (200, b"")

        # the critical model goes down: the service is down and not ready; still alive
        probes["flan"].healthy = False
        health.run_once()
        down = client.get("/")
        assert (down.status_code, down.json()["status"]) == (503, "down")
        assert client.get("/ready").status_code == 503
        assert client.get("/models").status_code == 503
        assert client.get("/dependencies").status_code == 200
        assert client.get("/live").status_code == 200

        probes["flan"].healthy = probes["bart"].healthy = True
        health.run_once()
        assert client.get("/").json()["status"] == "ok"
        if server_name.endswith("mount") or server_name == "fastapi-root-path":
            # the host application's own routes are untouched by the mount
            assert client.get(base.removesuffix("/health") + "/").text.strip('"') == "host app"


@SERVERS
def test_bearer_token_protects_every_route_but_live(
    served: Any, health: Health, server_name: str
) -> None:
    with served(health, TOKEN) as base, httpx.Client(base_url=base, timeout=5.0) as client:
        for path in ("/", "/ready", "/models", "/checks/redis"):
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert "checks" not in refused.json()
        assert client.get("/", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/", headers={"authorization": f"Basic {TOKEN}"}).status_code == 401
        assert client.get("/live").status_code == 200
        good = client.get("/", headers={"authorization": f"Bearer {TOKEN}"})
        assert good.status_code == 200
        assert good.json()["status"] == "degraded"
        ok = client.get("/checks/redis", headers={"Authorization": f"bearer {TOKEN}"})
        assert ok.json()["status"] == "ok"


def test_answers_come_from_cache_while_probes_hang(
    make_health: Callable[..., Health], serve_asgi: Any, wait_until: Any
) -> None:
    release = threading.Event()
    health = make_health(flap_threshold=1)
    for i in range(5):  # each probe blocks for 10 s: a request that waited would show it
        health.add(f"hang{i}", probe=lambda: release.wait(10.0), timeout_s=0.05, interval_s=0.05)
    try:
        with health, serve_asgi(health.asgi()) as base, httpx.Client(base_url=base) as client:
            wait_until(lambda: client.get("/").json()["score"] == 0.0)  # all five down
            body = client.get("/").json()
            timings = sorted(client.get("/").elapsed.total_seconds() for _ in range(30))
        assert [c["status"] for c in body["checks"]] == ["down"] * 5
        assert timings[len(timings) // 2] < 0.02
        assert timings[-1] < 0.5
    finally:
        release.set()


def test_invalid_token_is_refused_at_build_time(make_health: Callable[..., Health]) -> None:
    health = make_health()
    with pytest.raises(ValueError, match="token"):
        health.asgi(token="")
    with pytest.raises(ValueError, match="token"):
        health.wsgi(token="two words")


async def test_websocket_and_unknown_scopes_are_refused_without_raising(
    make_health: Callable[..., Health],
) -> None:
    app = make_health().asgi()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("nothing should be read")

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await app({"type": "websocket", "path": "/"}, receive, send)
    await app({"type": "something-else"}, receive, send)

    assert sent == [{"type": "websocket.close", "code": 1003}]


def test_an_internal_error_answers_500_without_details(
    make_health: Callable[..., Health], serve_wsgi: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    health = make_health()

    def broken(**_: Any) -> Any:
        raise RuntimeError(f"boom with {SECRET}")

    monkeypatch.setattr(health, "report", broken)
    with serve_wsgi(health.wsgi()) as base, httpx.Client(base_url=base) as client:
        answer = client.get("/")
        live = client.get("/live")

    assert (answer.status_code, answer.json()) == (500, {"error": "internal error"})
    assert SECRET not in answer.text
    assert live.status_code == 200  # liveness does not depend on the checks
