"""Capture-layer settings that :func:`modelwatch.configure` may change at run time."""

from __future__ import annotations

import os

_TRUE = {"1", "true", "yes", "on"}


def _env_flag(*names: str) -> bool:
    for name in names:
        value = os.environ.get(name)
        if value is not None:
            return value.strip().lower() in _TRUE
    return False


#: Record prompt and completion content on spans (off unless asked for).
capture_content: bool = _env_flag(
    "MODELWATCH_CAPTURE_CONTENT", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
)
