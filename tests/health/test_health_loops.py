"""Async probes run where the application's async clients work (issue 11).

A FastAPI app makes one ``httpx.AsyncClient`` per app, on uvicorn's loop; it is bound to that
loop. Before the fix every async probe ran on modelwatch's private loop thread and failed with
``RuntimeError: ... is bound to a different event loop``, turning a healthy model down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from structlog.testing import capture_logs

from modelwatch import semconv
from modelwatch.errors import ConfigurationError
from modelwatch.health import Health
from modelwatch.testing import FakeModelServer

MakeHealth = Callable[..., Health]


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


def _app(health: Health, url: str, *, start: str) -> FastAPI:
    """The normal set-up: one AsyncClient per app, made in the lifespan, used by the probe."""
    clients: list[httpx.AsyncClient] = []

    async def probe() -> bool:
        response = await clients[0].post(url, json={"inputs": "ping"})
        response.raise_for_status()
        return True

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=5.0) as client:
            clients.append(client)
            await client.post(url, json={"inputs": "warm"})  # binds its pool to this loop
            health.add("flan", probe=probe, kind="model", interval_s=0.05, critical=True)
            if start == "astart":
                await health.astart()
            else:
                health.start()  # inside the running loop: captures it too
            yield
            await health.astop()

    app = FastAPI(lifespan=lifespan)
    app.mount("/health", health.asgi())
    return app


@pytest.mark.parametrize("start", ["astart", "start"])
def test_async_probes_run_on_the_apps_loop_under_uvicorn(
    make_health: MakeHealth,
    model_server: FakeModelServer,
    serve_asgi: Callable[..., Any],
    wait_until: Callable[..., None],
    start: str,
) -> None:
    health = make_health(flap_threshold=1)
    url = model_server.model_url("google/flan-t5-large")
    with serve_asgi(_app(health, url, start=start)) as base:
        wait_until(lambda: model_server.request_count() >= 6, 10.0)  # warm-up + 5 probes
        ready = httpx.get(f"{base}/health/ready")
        check = httpx.get(f"{base}/health/checks/flan").json()
        probe_loop = health.loop

    assert ready.status_code == 200, ready.text
    assert (check["status"], check["error"]) == ("ok", None)
    assert probe_loop is not None  # uvicorn's loop, captured by the lifespan
    # every probe reached the server through the app's client (none failed before sending)
    assert model_server.request_count() >= 6


def test_a_probe_on_the_wrong_loop_is_named_as_such_and_warned_once(
    make_health: MakeHealth, model_server: FakeModelServer
) -> None:
    url = model_server.model_url("m")
    app_loop = asyncio.new_event_loop()
    try:
        client = app_loop.run_until_complete(_warm_client(url))
        health = make_health(flap_threshold=1)

        async def probe() -> None:
            (await client.post(url, json={"inputs": "x"})).raise_for_status()

        health.add("m", probe=probe)
        with capture_logs() as logs:
            first = health.run_once().check("m")  # started outside any loop: a private one
            second = health.run_once().check("m")  # httpx dropped the foreign connection
        app_loop.run_until_complete(client.aclose())
    finally:
        app_loop.close()

    assert first is not None
    assert second is not None
    assert second.status == "ok"
    assert first.status == "down"
    assert first.error is not None
    assert first.error.startswith("wrong event loop: RuntimeError")
    assert "bound to a different event loop" in first.error
    warned = [e for e in logs if e["event"] == "modelwatch.health.wrong_event_loop"]
    assert [(e["check"], e["log_level"]) for e in warned] == [("m", "warning")]
    assert "astart" in warned[0]["message"]


def test_wrong_loop_failures_are_not_blamed_on_the_target(make_health: MakeHealth) -> None:
    from modelwatch.testing import capture

    health = make_health(flap_threshold=1)

    async def probe() -> None:
        raise RuntimeError("<asyncio.locks.Event object> is bound to a different event loop")

    health.add("m", probe=probe)
    with capture() as captured:
        health.run_once()
        points = captured.metric_points(semconv.HEALTH_CHECK_DURATION.name)
    assert {p.attributes.get(semconv.ERROR_TYPE) for p in points} == {semconv.ERROR_OTHER}


async def _warm_client(url: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(timeout=5.0)
    await client.post(url, json={"inputs": "warm"})
    return client


def test_start_with_an_explicit_loop_and_arun_once(
    make_health: MakeHealth, model_server: FakeModelServer
) -> None:
    url = model_server.model_url("m")

    async def main() -> tuple[str, str | None]:
        client = await _warm_client(url)
        health = make_health(flap_threshold=1)

        async def probe() -> None:
            (await client.post(url, json={"inputs": "x"})).raise_for_status()

        health.add("m", probe=probe)
        health.start(loop=asyncio.get_running_loop())
        with pytest.raises(RuntimeError, match="arun_once"):
            health.run_once()  # would block the very loop the probe needs
        report = await health.arun_once()
        await health.astop()
        await client.aclose()
        check = report.check("m")
        assert check is not None
        return check.status, check.error

    assert asyncio.run(main()) == ("ok", None)


def test_start_rejects_a_closed_or_wrong_loop(make_health: MakeHealth) -> None:
    health = make_health()
    closed = asyncio.new_event_loop()
    closed.close()
    with pytest.raises(ConfigurationError, match="closed"):
        health.start(loop=closed)
    with pytest.raises(ConfigurationError, match="loop must be an asyncio event loop"):
        health.start(loop="main")  # type: ignore[arg-type]


class _NotARouter:
    pass


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"critical": "yes"}, "critical"),
        ({"critical": 1}, "critical"),
        ({"weight": float("nan")}, "weight"),
        ({"weight": "2"}, "weight"),
        ({"timeout_s": float("nan")}, "timeout_s"),
        ({"interval_s": "30"}, "interval_s"),
        ({"down_interval_s": float("inf")}, "down_interval_s"),
        ({"flap_threshold": 1.5}, "flap_threshold"),
        ({"kind": ["model"]}, "kind"),
    ],
)
def test_add_names_the_bad_argument(
    make_health: MakeHealth, kwargs: dict[str, Any], named: str
) -> None:
    health = make_health()
    with pytest.raises(ConfigurationError, match=named):
        health.add("m", probe=lambda: True, **kwargs)
    assert "m" not in health


@pytest.mark.parametrize("router", ["code_review", _NotARouter(), None])
def test_add_router_refuses_what_is_not_a_router(make_health: MakeHealth, router: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"add_router.*must be a modelwatch\.Router"):
        make_health().add_router(router)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"degraded_below": float("nan")}, "degraded_below"),
        ({"degraded_below": "0.9"}, "degraded_below"),
        ({"jitter": float("nan")}, "jitter"),
        ({"probe_threads": 0}, "probe_threads"),
        ({"flap_threshold": "2"}, "flap_threshold"),
    ],
)
def test_health_names_the_bad_argument(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        Health(**kwargs)
