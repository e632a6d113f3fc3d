"""Captured content in the GenAI conventions' role-and-parts JSON.

``gen_ai.input.messages`` / ``gen_ai.output.messages`` are JSON arrays of messages
``{"role": ..., "parts": [{"type": "text", "content": ...}], "finish_reason": ...}``;
``gen_ai.system_instructions`` is a JSON array of parts. This module turns what clients take
and return (a prompt string, openai-style ``{"role", "content"}`` messages, already-shaped
messages) into that form. Nothing here runs unless content capture is on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from modelwatch.capture.scrub import scrub


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, Sequence):  # openai content parts: [{"type": "text", "text": ...}]
        parts: list[dict[str, Any]] = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append({"type": "text", "content": part.get("text", "")})
            elif isinstance(part, str):
                parts.append({"type": "text", "content": part})
            else:
                parts.append({"type": str(_get(part, "type") or "unknown")})
        return parts
    return [{"type": "text", "content": str(content)}]


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def message(role: str, content: Any, finish_reason: str | None = None) -> dict[str, Any]:
    """One message in role-and-parts form (``content``: text or openai-style parts)."""
    out: dict[str, Any] = {"role": role, "parts": _parts(content)}
    if finish_reason:
        out["finish_reason"] = finish_reason
    return out


_MESSAGE_KEYS = ("role", "content", "parts")


def messages(value: Any, default_role: str) -> Any:
    """Role-and-parts messages from a prompt string, a list of ``{"role", "content"}``
    messages (dicts or objects) or of messages already in role-and-parts form. Anything else
    (a mapping that is no message, a number) is returned as it is, to be recorded as JSON."""
    if isinstance(value, str):
        return [message(default_role, value)]
    if isinstance(value, Mapping):
        if not any(key in value for key in _MESSAGE_KEYS):
            return value
        value = [value]
    if not isinstance(value, Sequence):
        return value
    out = []
    for item in value:
        if isinstance(item, str):
            out.append(message(default_role, item))
        elif isinstance(item, Mapping) and "parts" in item:
            out.append(dict(item))
        else:
            role = _get(item, "role") or default_role
            out.append(message(str(role), _get(item, "content"), _get(item, "finish_reason")))
    return out


def system_parts(system: Any) -> list[dict[str, Any]]:
    """System instructions (a text, parts or system messages) as a list of parts."""
    found = messages(system, "system")
    if not isinstance(found, list):
        return []
    return [p for m in found if isinstance(m, Mapping) for p in m.get("parts", [])]


def split_system(chat: Any) -> tuple[list[dict[str, Any]], Any]:
    """``(system instruction parts, the other messages)`` of a chat."""
    if not isinstance(chat, list):
        return [], chat
    system = [p for m in chat if m.get("role") == "system" for p in m.get("parts", [])]
    return system, [m for m in chat if m.get("role") != "system"]


def encode(value: Any) -> str:
    """The scrubbed JSON text of captured content."""
    return scrub(json.dumps(value, default=str, ensure_ascii=False))
