"""Fixtures: ``fake_server``, a started :class:`FakeModelServer`, stopped after the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelwatch.testing.fake_server import FakeModelServer


@pytest.fixture
def fake_server() -> Iterator[FakeModelServer]:
    """A running fake model server on 127.0.0.1 (ephemeral port), serving any model id."""
    with FakeModelServer() as server:
        yield server
