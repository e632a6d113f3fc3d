"""A small, deterministic YAML writer for the generated configuration files.

PyYAML is a development dependency only, so the generators write YAML themselves. The subset
is what Prometheus and Alertmanager files need: mappings (key order kept), lists, strings,
numbers, booleans and ``None``. Strings that could be misread are written JSON-quoted (a JSON
string is a valid YAML double-quoted scalar); multi-line strings use literal blocks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Final

_PLAIN_SAFE: Final = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./\- ]*$")
_DURATION: Final = re.compile(r"^(\d+(ms|[smhdwy]))+$")
_RESERVED: Final = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"  # YAML's spelling: a plain `nan` or `inf` reads back as a string
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        # YAML 1.1 (PyYAML) reads a float only with a dot: 1e-09 must be 1.0e-09
        if "e" in text and "." not in text:
            text = text.replace("e", ".0e", 1)
        return text
    text = str(value)
    if _DURATION.fullmatch(text):
        return text
    if _PLAIN_SAFE.fullmatch(text) and text.lower() not in _RESERVED and not text.endswith(" "):
        return text
    if "'" not in text and text.isprintable():
        return f"'{text}'"  # single quotes escape nothing else: PromQL and matchers stay legible
    return _double_quoted(text)


def _double_quoted(text: str) -> str:
    """A YAML double-quoted scalar: every character YAML could misread is escaped."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() and char not in "\u2028\u2029":
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def _is_block_text(value: object) -> bool:
    """Multi-line text a literal block (``|-``) carries exactly: no trailing line break, no
    leading blank or space (the block's indentation would swallow it), nothing non-printable."""
    if not isinstance(value, str) or "\n" not in value or value.endswith("\n"):
        return False
    lines = value.split("\n")
    return (
        bool(lines[0])
        and not lines[0][0].isspace()
        and all(line.isprintable() for line in lines)
        and not any(line != line.rstrip() for line in lines)
    )


def _block(text: str, indent: str) -> list[str]:
    lines = text.rstrip("\n").split("\n")
    return [f"{indent}{line}" if line else "" for line in lines]


def _emit(value: object, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, Mapping):
        if not value:
            out[-1] += " {}"
            return
        for key, item in value.items():
            head = f"{pad}{_scalar(key)}:"
            if _is_block_text(item):
                out.append(f"{head} |-")
                out.extend(_block(str(item), pad + "  "))
            elif isinstance(item, Mapping | list | tuple):
                out.append(head)
                if not item:
                    out[-1] += " {}" if isinstance(item, Mapping) else " []"
                else:
                    _emit(item, indent + 2, out)
            else:
                out.append(f"{head} {_scalar(item)}")
        return
    if isinstance(value, Sequence) and not isinstance(value, str):
        for item in value:
            if isinstance(item, Mapping) and item:
                start = len(out)
                _emit(item, indent + 2, out)
                out[start] = f"{pad}- {out[start][indent + 2 :]}"
            elif isinstance(item, list | tuple) and item:
                out.append(f"{pad}-")
                _emit(item, indent + 2, out)
            elif _is_block_text(item):
                out.append(f"{pad}- |-")
                out.extend(_block(str(item), pad + "  "))
            elif isinstance(item, Mapping | list | tuple):
                out.append(f"{pad}- {'{}' if isinstance(item, Mapping) else '[]'}")
            else:
                out.append(f"{pad}- {_scalar(item)}")
        return
    out.append(f"{pad}{_scalar(value)}")


def dump(document: Mapping[str, object], header: str = "") -> str:
    """``document`` as YAML text, with ``header`` lines written as leading comments."""
    out: list[str] = [f"# {line}".rstrip() for line in header.splitlines()]
    _emit(document, 0, out)
    return "\n".join(out) + "\n"
