"""pytest plugin (registered through the ``pytest11`` entry point): the ``modelwatch_capture``
fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelwatch.testing.capture import Captured, capture


@pytest.fixture
def modelwatch_capture() -> Iterator[Captured]:
    """Spans and metric points modelwatch emits during the test, collected in memory."""
    with capture() as captured:
        yield captured
