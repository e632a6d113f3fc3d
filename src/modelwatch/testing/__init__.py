"""Test helpers for users of modelwatch: in-memory capture, a pytest fixture, a fake model server.

- :func:`capture` collects spans and metric points in memory (``with capture() as cap: ...``);
- the ``modelwatch_capture`` pytest fixture does the same for one test (registered as a plugin);
- :class:`FakeModelServer` emulates Hugging Face and OpenAI-compatible endpoints on 127.0.0.1
  with programmable faults, for testing your own failover.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelwatch.testing.capture import Captured, MetricPoint, capture

if TYPE_CHECKING:
    from modelwatch.testing.fake_server import FakeModelServer

__all__ = ["Captured", "FakeModelServer", "MetricPoint", "capture"]


def __getattr__(name: str) -> Any:
    if name == "FakeModelServer":  # imported on first use: tests that never need it pay nothing
        from modelwatch.testing.fake_server import FakeModelServer

        return FakeModelServer
    raise AttributeError(f"module 'modelwatch.testing' has no attribute {name!r}")
