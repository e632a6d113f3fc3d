"""Capture-layer settings that :func:`modelwatch.configure` may change at run time.

Content capture follows ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` with the values
OpenTelemetry's util-genai reads (``NO_CONTENT``, ``SPAN_ONLY``, ``EVENT_ONLY``,
``SPAN_AND_EVENT``) as well as ``true``/``false`` (``true``: on the span, as before), so one
process can satisfy both libraries. ``MODELWATCH_CAPTURE_CONTENT`` takes the same values.
"""

from __future__ import annotations

import os
from typing import Final

from modelwatch.errors import ConfigurationError

_TRUE: Final = {"1", "true", "yes", "on"}
_FALSE: Final = {"0", "false", "no", "off", ""}
ENVS: Final = ("MODELWATCH_CAPTURE_CONTENT", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")

NO_CONTENT: Final = "NO_CONTENT"
SPAN_ONLY: Final = "SPAN_ONLY"
EVENT_ONLY: Final = "EVENT_ONLY"
SPAN_AND_EVENT: Final = "SPAN_AND_EVENT"
#: mode -> (on the span, as the inference-details event)
MODES: Final[dict[str, tuple[bool, bool]]] = {
    NO_CONTENT: (False, False),
    SPAN_ONLY: (True, False),
    EVENT_ONLY: (False, True),
    SPAN_AND_EVENT: (True, True),
}


def parse_mode(setting: str, value: object) -> str:
    """The capture mode ``value`` names (a bool, true/false words or a util-genai value).

    Raises :class:`ConfigurationError` naming ``setting`` for anything else.
    """
    if isinstance(value, bool):
        return SPAN_ONLY if value else NO_CONTENT
    if isinstance(value, str):
        word = value.strip()
        if word.upper() in MODES:
            return word.upper()
        if word.lower() in _TRUE:
            return SPAN_ONLY
        if word.lower() in _FALSE:
            return NO_CONTENT
    raise ConfigurationError(
        f"{setting}: expected true/false or one of {', '.join(MODES)}, got {value!r}"
    )


def parse_capture_content(setting: str, value: object) -> bool:
    """Validate a ``capture_content`` setting; whether any content is captured."""
    return parse_mode(setting, value) != NO_CONTENT


def _env_mode() -> str:
    for name in ENVS:
        value = os.environ.get(name)
        if value is not None:
            try:
                return parse_mode(name, value)
            except ConfigurationError:
                return NO_CONTENT  # configure() reports it; capture stays off meanwhile
    return NO_CONTENT


def apply(capture: bool) -> None:
    """Set by ``configure()``: capture on or off, where the environment says (else the span)."""
    global capture_content, content_on_span, content_on_event
    mode = _env_mode()
    if capture and mode == NO_CONTENT:
        mode = SPAN_ONLY
    elif not capture:
        mode = NO_CONTENT
    capture_content = capture
    content_on_span, content_on_event = MODES[mode] if capture else (True, False)


_mode = _env_mode()
#: Record prompt and completion content (off unless asked for).
capture_content: bool = _mode != NO_CONTENT
#: Where captured content goes: span attributes, the inference-details event, or both.
content_on_span: bool
content_on_event: bool
content_on_span, content_on_event = MODES[_mode] if capture_content else (True, False)
