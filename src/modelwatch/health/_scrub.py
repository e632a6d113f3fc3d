"""Error text fit for a health response: secrets scrubbed, one line, short.

Secrets are removed by the project's one scrubber, :func:`modelwatch.capture.scrub.scrub`;
this module adds what a public endpoint needs on top: no multi-line dumps (so no stack
trace can slip through) and a length cap.
"""

from __future__ import annotations

from typing import Final

from modelwatch.capture.scrub import scrub as scrub_secrets

#: Longest error text a health response carries: enough to diagnose, too short for a dump.
MAX_ERROR_CHARS: Final = 200


def scrub(text: str) -> str:
    """Remove secrets from ``text``, fold it onto one line and cap it at
    :data:`MAX_ERROR_CHARS` characters."""
    text = " ".join(scrub_secrets(text).split())
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return text
