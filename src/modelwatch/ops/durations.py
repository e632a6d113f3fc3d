"""Prometheus durations (``90s``, ``1h30m``, ``3d``) to and from whole seconds."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["format_duration", "parse_duration"]

_UNITS: Final[dict[str, int]] = {
    "y": 365 * 86400,
    "w": 7 * 86400,
    "d": 86400,
    "h": 3600,
    "m": 60,
    "s": 1,
}
_PART: Final = re.compile(r"(\d+)(ms|[ywdhms])")


def parse_duration(text: str) -> int:
    """Whole seconds in a Prometheus duration such as ``"5m"`` or ``"1h30m"``.

    >>> parse_duration("1h30m")
    5400

    Raises:
        ValueError: ``text`` is not a duration, or has a sub-second part.
    """
    text = text.strip()
    if text.isdigit():
        return int(text)
    pos, total = 0, 0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        if match.group(2) == "ms":
            raise ValueError(f"sub-second durations are not supported: {text!r}")
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return total


def format_duration(seconds: int) -> str:
    """The shortest Prometheus spelling: ``5400`` -> ``"1h30m"``, ``0`` -> ``"0s"``."""
    if seconds < 0:
        raise ValueError(f"negative duration: {seconds}")
    if seconds == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
