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
#: Prometheus' own duration syntax (``model.ParseDuration``): each unit at most once, largest
#: first, and nothing but ``"0"`` without a unit.
_DURATION: Final = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?"
)


def parse_duration(text: str) -> int:
    """Whole seconds in a Prometheus duration such as ``"5m"`` or ``"1h30m"``.

    Accepts what Prometheus (and ``promtool``) accept: units largest first, each once
    (``30m1h`` and ``1h1h`` are errors), and a bare number only as ``"0"`` (``00`` and
    ``120`` are errors).

    >>> parse_duration("1h30m")
    5400

    Raises:
        ValueError: ``text`` is not a duration, or has a sub-second part.
    """
    text = text.strip()
    if text == "0":
        return 0
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    *parts, millis = match.groups()
    if millis is not None and int(millis):
        raise ValueError(f"sub-second durations are not supported: {text!r}")
    sizes = [_UNITS[unit] for unit in ("y", "w", "d", "h", "m", "s")]
    return sum(int(count) * size for count, size in zip(parts, sizes, strict=True) if count)


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
