"""The status page in a real headless browser (Debian chromium + chromium-driver, Selenium):
mounted in a FastAPI app on uvicorn, as users run it. Skips without the browser, fails
without it under MODELWATCH_REQUIRE_SERVERS=1."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from modelwatch.health import Health
from support.browser import chromium

SECRET_ERROR = "connect to 10.9.8.7:6379 refused; api_key=sk-live-abcdef123456"


class Switch:
    def __init__(self) -> None:
        self.up = True

    def __call__(self) -> bool:
        if not self.up:
            raise ConnectionError(SECRET_ERROR)
        return True


def test_status_page_in_chromium(
    make_health: Callable[..., Health], serve_asgi: Callable[..., Any], tmp_path: Path
) -> None:
    health = make_health(flap_threshold=1)
    redis = Switch()
    health.add("redis", probe=redis, kind="dependency", critical=True)
    health.add("google/flan-t5-large", probe=lambda: True, kind="model")
    # bart needs redis: it goes down with it, and its incident names redis as the root cause
    health.add("facebook/bart-large-cnn", probe=lambda: redis.up, kind="model", depends_on="redis")
    health.add("code_review", probe=lambda: True, kind="analysis", depends_on="redis")
    health.run_once()
    app = FastAPI()
    app.mount("/status", health.status_page())
    with serve_asgi(app) as base, chromium() as browser:
        browser.get(f"{base}/status/")
        before = browser.find_element("tag name", "body").text
        first_logs = browser.get_log("browser")

        redis.up = False
        health.run_once()
        browser.refresh()
        after = browser.find_element("tag name", "body").text
        html = browser.page_source
        logs = first_logs + browser.get_log("browser")
        shot = tmp_path / "status-page.png"
        assert browser.save_screenshot(str(shot))
        docs_shot = os.environ.get("MODELWATCH_STATUS_PAGE_SCREENSHOT")
        if docs_shot:  # how docs/img/status-page.png is made
            browser.save_screenshot(docs_shot)
        scripts = browser.find_elements("tag name", "script")
        landmarks = [browser.find_elements("tag name", t) for t in ("header", "main", "footer")]

    assert [entry for entry in logs if entry["level"] == "SEVERE"] == []
    assert scripts == []
    assert all(len(found) == 1 for found in landmarks)
    for name in ("google/flan-t5-large", "facebook/bart-large-cnn", "code_review"):
        assert name in before
        assert name in after
    assert "All systems operational" in before
    assert "Down" not in before
    assert "Major outage" in after  # the critical dependency is down after the reload
    assert "root cause: redis" in after
    for leak in ("10.9.8.7", "6379", "sk-live", "api_key", "ConnectionError", "refused"):
        assert leak not in html
    assert shot.stat().st_size > 10_000
