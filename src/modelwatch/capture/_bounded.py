"""A bound on the attribute sets a modelwatch registry keeps (quality, drift, baselines).

Past ``limit`` distinct keys, new keys are not admitted: their values fold into one overflow
attribute set (``otel.metric.overflow=true``), as the OpenTelemetry SDK does for its own
streams, and a warning is logged once per registry.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Final

import structlog

from modelwatch import semconv

logger = structlog.get_logger("modelwatch")

#: the attributes of the overflow set
OVERFLOW_ATTRIBUTES: Final = {semconv.OTEL_METRIC_OVERFLOW: True}


class BoundedKeys:
    """Remembers up to ``limit`` keys; :meth:`admit` says whether a key is one of them."""

    def __init__(self, what: str, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"{what}: the cardinality limit must be an int >= 1, got {limit!r}")
        self.what = what
        self.limit = limit
        self._keys: set[Hashable] = set()
        self._lock = threading.Lock()
        self._warned = False

    def admit(self, key: Hashable) -> bool:
        """``True`` if ``key`` is (or now becomes) one of the kept keys, ``False`` if it
        overflows (warned about once)."""
        if key in self._keys:
            return True
        with self._lock:
            if key in self._keys:
                return True
            if len(self._keys) < self.limit:
                self._keys.add(key)
                return True
            warn = not self._warned
            self._warned = True
        if warn:
            logger.warning(
                "modelwatch.cardinality.overflow",
                registry=self.what,
                limit=self.limit,
                detail="new attribute sets fold into otel.metric.overflow=true",
            )
        return False

    def __len__(self) -> int:
        return len(self._keys)
