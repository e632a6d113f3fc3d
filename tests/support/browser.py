"""A real headless browser for tests: Debian ``chromium`` + ``chromium-driver`` through Selenium.

``tests/servers_setup.py`` installs both packages (as root); without them, or without the
``selenium`` package, a test using :func:`chromium` skips with a reason, or fails under
``MODELWATCH_REQUIRE_SERVERS=1`` (see ``support.servers.require_server``). Selenium is pointed
at the Debian binaries, so it never tries to download a driver (there is no internet here).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from support.servers import REQUIRE_ENV, require_server, servers_required


@contextmanager
def chromium(width: int = 1100, height: int = 1400) -> Iterator[Any]:
    """A headless Chromium WebDriver (console logs captured), quit when the block ends."""
    binary = require_server("chromium")
    driver_path = require_server("chromedriver")
    if importlib.util.find_spec("selenium") is None:
        message = "selenium not installed (pip install -e '.[dev]')"
        if servers_required():
            pytest.fail(f"{message} and {REQUIRE_ENV}=1 makes that a failure", pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
