"""Secret scrubbing: API keys and tokens never reach a span, a log line or a health response.

Applied to exception messages, span attribute strings and captured content before they are
recorded. Patterns cover bearer tokens, Hugging Face (``hf_…``), OpenAI-style (``sk-…``),
AWS access keys, GitHub tokens, ``api_key=…``/``token=…`` pairs and credentials in URLs.
"""

from __future__ import annotations

import re
from typing import Final

REDACTED: Final = "[REDACTED]"

_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # Authorization: Bearer <token>
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    # Hugging Face tokens
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}\b"), REDACTED),
    # OpenAI / Anthropic style keys: sk-..., sk-proj-..., sk-ant-...
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), REDACTED),
    # AWS access key ids
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), REDACTED),
    # GitHub tokens
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"), REDACTED),
    # key=value / "key": "value" pairs whose key names a secret
    (
        re.compile(
            r"(?i)([\"']?\b(?:api[_-]?key|access[_-]?token|auth[_-]?token|token|secret|password"
            r"|passwd|authorization|x-api-key)[\"']?\s*[:=]\s*[\"']?)([^\s\"'&,;}]{4,})"
        ),
        r"\1" + REDACTED,
    ),
    # credentials in URLs: scheme://user:pass@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1" + REDACTED + "@"),
)

_QUICK_MARKERS: Final = (
    "hf_",
    "sk-",
    "key",
    "token",
    "secret",
    "pass",
    "auth",
    "bearer",
    "basic",
    "Bearer",
    "Basic",
    "AKIA",
    "ASIA",
    "gh",
    "@",
    "KEY",
    "TOKEN",
    "SECRET",
)


def scrub(text: str) -> str:
    """Return ``text`` with anything that looks like a secret replaced by ``[REDACTED]``.

    >>> scrub("401 for token hf_abcdefghijklmnop")
    '401 for token [REDACTED]'
    """
    if not text or not any(marker in text for marker in _QUICK_MARKERS):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub_value(value: object) -> object:
    """Scrub a span attribute value: strings and sequences of strings; others pass through."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v) if isinstance(v, str) else v for v in value)
    return value
