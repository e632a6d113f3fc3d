"""Construction-time checks of a router's and a backend's arguments: a wrong type or value
fails loudly with a :class:`~modelwatch.ConfigurationError` naming the argument, never later
inside a call (``Router(classify='x')`` would otherwise silently turn failover off)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from modelwatch.errors import ConfigurationError

__all__ = ["check_callable", "check_instance", "check_timeout", "checked_backends"]


def check_timeout(owner: str, key: str, value: object) -> float | None:
    """A positive, finite number of seconds, or ``None``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(
            f"{owner} {key} must be a number of seconds or None, got {value!r}"
        )
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{owner} {key} must be > 0 and finite, or None, got {value!r}")
    return float(value)


def check_callable(owner: str, key: str, value: object) -> None:
    """``value`` must be callable (or ``None``, the default)."""
    if value is not None and not callable(value):
        raise ConfigurationError(f"{owner} {key} must be callable or None, got {value!r}")


def check_instance(owner: str, key: str, value: object, cls: type, what: str) -> None:
    """``value`` must be a ``cls`` (or ``None``, the default)."""
    if value is not None and not isinstance(value, cls):
        raise ConfigurationError(f"{owner} {key} must be {what} or None, got {value!r}")


def checked_backends(name: object, backends: Iterable[Any], backend_type: type) -> list[Any]:
    """The router's name and backends, checked: a non-empty name, at least one backend,
    all of them ``Backend`` objects with unique names."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"Router name must be a non-empty str, got {name!r}")
    try:
        if isinstance(backends, (str, bytes)):
            raise TypeError
        found = list(backends)
    except TypeError:
        raise ConfigurationError(
            f"Router {name!r}: backends must be a list of Backend, got {backends!r}"
        ) from None
    if not found:
        raise ConfigurationError(f"Router {name!r} needs at least one backend")
    for b in found:
        if not isinstance(b, backend_type):
            raise ConfigurationError(f"Router {name!r}: {b!r} is not a Backend")
    names = [b.name for b in found]
    if len(set(names)) != len(names):
        raise ConfigurationError(
            f"Router {name!r}: backend names must be unique, got {names}; "
            "pass Backend(name=...) to tell two backends of one model apart"
        )
    return found
