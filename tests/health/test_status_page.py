"""The status page over real HTTP (uvicorn and wsgiref): names and states only, escaped,
uptime bars with text alternatives, incidents with causes, auth and caching headers."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from modelwatch.health import Health
from modelwatch.health.status_page import render

DAY = 86_400.0
SECRET = "sk-live-9f8e7d6c5b4a"
HOST = "db-7.internal.example"


class Flip:
    def __init__(self) -> None:
        self.ok = True

    def __call__(self) -> None:
        if not self.ok:
            raise ConnectionError(f"{HOST}:5432 refused (api_key={SECRET}) https://{HOST}/v1")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.labels: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.labels += [v or "" for k, v in attrs if k == "aria-label"]


def _month(make_health: Any, clock: Any) -> tuple[Health, Flip]:
    """A month of history: up from day 0, one hour down on day 10, ongoing outage at the end
    of another check."""
    health = make_health(clock=clock, flap_threshold=1)
    flan, redis = Flip(), Flip()
    health.add("google/<flan>&t5", flan, kind="model", critical=True)
    health.add("code_review", Flip(), kind="analysis")
    health.add("redis", redis, kind="dependency")
    health.run_once()
    clock.advance(10 * DAY)
    flan.ok = False
    health.run_once()
    clock.advance(3600.0)
    flan.ok = True
    health.run_once()
    clock.advance(20 * DAY + 12 * 3600.0 - 3600.0)  # now: day 30, midday
    redis.ok = False
    health.run_once()
    clock.advance(3600.0)
    return health, flan


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_the_page_shows_names_states_bars_and_incidents_never_errors(
    make_health: Any, clock: Any, serve_asgi: Any, serve_wsgi: Any, server: str
) -> None:
    health, _ = _month(make_health, clock)
    assert HOST in (health.report().check("redis").error or "")  # the probe's error exists
    app = health.status_page() if server == "asgi" else health.status_page_wsgi()
    serve = serve_asgi if server == "asgi" else serve_wsgi
    with serve(app) as url, httpx.Client(base_url=url) as client:
        got = client.get("/")
        head = client.head("/")
        missing = client.get("/nope")
        post = client.post("/")
    assert got.status_code == 200
    assert got.headers["content-type"] == "text/html; charset=utf-8"
    assert got.headers["cache-control"] == "public, max-age=10"
    assert head.status_code == 200
    assert head.content == b""
    assert (missing.status_code, post.status_code) == (404, 405)
    page = got.text
    for leak in (SECRET, HOST, "5432", "refused", "https://", "ConnectionError"):
        assert leak not in page
    assert "google/&lt;flan&gt;&amp;t5" in page  # escaped
    assert "<flan>" not in page
    assert "<script" not in page
    assert 'data-check="redis" data-state="down"' in page
    assert 'data-check="code_review" data-state="ok"' in page
    assert "Some systems are degraded" in page  # redis is down but not critical
    tags = _Tags()
    tags.feed(page)
    for landmark in ("header", "main", "footer", "h1", "h2"):
        assert landmark in tags.tags
    # one bar per check, each with a text alternative; flan: 29 of 30 days up, 1 down
    assert "29 of 30 days fully up, 1 with downtime" in tags.labels
    assert tags.labels.count("30 of 30 days fully up") == 1  # code_review
    assert tags.labels.count("29 of 30 days fully up, 1 with downtime") == 2  # redis: today
    assert page.count("<rect ") == 3 * 30
    # incidents: redis ongoing under Current, flan's hour under Past 30 days
    current, past = page.split('id="h-current"')[1].split('id="h-past"')
    assert 'data-check="redis"' in current
    assert "since 12:00 UTC (1 h 0 min so far)" in current  # an ongoing one, in words
    assert "from 2026-01-11 00:00 UTC to 2026-01-11 01:00 UTC (1 h 0 min)" in past
    assert "google/&lt;flan&gt;&amp;t5" in past
    assert "1 h 0 min" in past


def test_a_token_guards_the_page_and_makes_caching_private(
    make_health: Any, clock: Any, serve_asgi: Any
) -> None:
    health = make_health(clock=clock)
    health.add("m", Flip(), kind="model")
    with serve_asgi(health.status_page(token="t0k")) as url, httpx.Client(base_url=url) as c:
        assert c.get("/").status_code == 401
        assert c.get("/", headers={"Authorization": "Bearer nope"}).status_code == 401
        got = c.get("/", headers={"Authorization": "Bearer t0k"})
    assert got.status_code == 200
    assert got.headers["cache-control"] == "private, max-age=10"
    assert 'data-state="unknown"' in got.text  # never probed: said in words, not hidden
    assert "No data" in got.text


def test_mounted_in_starlette_under_a_prefix(make_health: Any, clock: Any, serve_asgi: Any) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    health = make_health(clock=clock)
    health.add("m", Flip(), kind="model")
    health.run_once()
    app = Starlette(routes=[Mount("/status", app=health.status_page())])
    with serve_asgi(app) as url, httpx.Client(base_url=url) as client:
        got = client.get("/status/")
    assert got.status_code == 200
    assert "All systems operational" in got.text


def test_an_ongoing_incident_says_since_when_and_how_long_so_far(
    make_health: Any, clock: Any
) -> None:
    health = make_health(clock=clock, flap_threshold=1)
    redis = Flip()
    health.add("redis", redis, kind="dependency")
    health.run_once()
    clock.advance(23 * 3600.0 + 50 * 60.0)  # 2026-01-01 23:50 UTC
    redis.ok = False
    health.run_once()
    clock.advance(7 * 60.0)
    page = render(health)
    assert "since 23:50 UTC (7 min so far)" in page
    clock.advance(3 * 60.0)  # past midnight: the start is on another day now
    page = render(health)
    assert "since 2026-01-01 23:50 UTC (10 min so far)" in page
