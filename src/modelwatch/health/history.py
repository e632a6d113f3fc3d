"""State-change history of a :class:`~modelwatch.health.Health`: uptime ratios and incidents.

Every change of a check's effective status is kept in a bounded ring per check and, with a
``path``, appended to a JSON-lines file that a new process reads back (so the history survives
a restart). The file is compacted — rewritten from the rings, records older than the longest
window dropped — whenever it grows past twice the records the rings hold.

Uptime is the share of *observed* time a check was not ``down``: ``degraded`` counts as up
(the service answered, slowly or partly) and ``unknown`` time (before the first result, or
while nothing is known) is left out of both sides of the ratio. An incident is a stretch of
``degraded`` or ``down`` that ends when the check is ``ok`` again; its ``state`` is the worst
status seen during it and its ``cause`` the last (deepest) root cause reported for it.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from modelwatch._safety import report_internal_error
from modelwatch.errors import ConfigurationError
from modelwatch.health.results import iso

__all__ = ["MAX_WINDOW_S", "WINDOWS", "Change", "History", "Incident"]

#: The uptime windows every history reports, by label.
WINDOWS: Final[Mapping[str, float]] = {"24h": 86_400.0, "7d": 7 * 86_400.0, "30d": 30 * 86_400.0}
_LONGEST: Final = max(WINDOWS.values())
#: The longest ``window_s`` a history answers for: what the file store keeps (30 days).
MAX_WINDOW_S: Final = _LONGEST
_BAD: Final = ("degraded", "down")
_RANK: Final[Mapping[str, int]] = {"ok": 0, "unknown": 0, "degraded": 1, "down": 2}


@dataclass(frozen=True)
class Change:
    """One change of a check's effective status at wall time ``at`` (epoch seconds)."""

    at: float
    name: str
    kind: str
    previous: str
    status: str
    cause: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """This change as JSON (also one line of the file store)."""
        return {
            "at": self.at,
            "name": self.name,
            "kind": self.kind,
            "previous": self.previous,
            "status": self.status,
            "cause": self.cause,
        }


@dataclass(frozen=True)
class Incident:
    """A stretch of ``degraded``/``down`` of one check; ``end`` is ``None`` while it lasts."""

    name: str
    kind: str
    start: float
    end: float | None
    state: str
    cause: str | None

    def duration_s(self, now: float) -> float:
        """How long it lasted (until ``now`` while it is ongoing)."""
        return (now if self.end is None else self.end) - self.start

    def to_dict(self, now: float) -> dict[str, Any]:
        """This incident as the JSON of ``GET /history``."""
        return {
            "check": self.name,
            "kind": self.kind,
            "start": _iso(self.start),
            "end": None if self.end is None else _iso(self.end),
            "duration_s": round(self.duration_s(now), 3),
            "state": self.state,
            "cause": self.cause,
        }


def _iso(at: float) -> str | None:
    return iso(datetime.fromtimestamp(at, tz=timezone.utc))


class History:
    """The bounded state-change history of one registry (thread-safe).

    ``per_check`` is how many changes each check keeps in memory; ``max_checks`` bounds how
    many check names are kept (changes of further names are dropped and reported once).
    ``path`` is the optional JSON-lines file store; an unreadable line in it is skipped.
    """

    def __init__(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        per_check: int = 1000,
        max_checks: int = 1000,
    ) -> None:
        if isinstance(per_check, bool) or not isinstance(per_check, int) or per_check < 2:
            raise ConfigurationError(
                f"Health(history_size=...): must be an int >= 2, got {per_check!r}"
            )
        self._per_check = per_check
        self._max_checks = max_checks
        self._lock = threading.Lock()
        self._rings: dict[str, deque[Change]] = {}
        self._overflowed = False
        self._path = None if path is None else _store_path(path)
        self._lines = 0
        if self._path is not None:
            self._load(self._path)

    # ------------------------------------------------------------------ recording
    def record(self, change: Change) -> None:
        """Keep ``change`` (and append it to the file store). Never raises."""
        with self._lock:
            if not self._keep(change):
                return
            if self._path is not None:
                try:
                    self._append(change)
                except OSError as exc:
                    report_internal_error("health.history_store", exc)

    def _keep(self, change: Change) -> bool:
        ring = self._rings.get(change.name)
        if ring is None:
            if len(self._rings) >= self._max_checks:
                if not self._overflowed:
                    self._overflowed = True
                    report_internal_error(
                        "health.history", OverflowError(f"more than {self._max_checks} checks")
                    )
                return False
            ring = self._rings[change.name] = deque(maxlen=self._per_check)
        if ring and change.at < ring[-1].at:  # a clock that went back: keep the order
            change = Change(ring[-1].at, *_fields(change)[1:])
        ring.append(change)
        return True

    def _append(self, change: Change) -> None:
        assert self._path is not None
        if self._lines >= 2 * self._per_check * max(len(self._rings), 1):
            self._compact(self._path, change.at)
            return  # the rewrite holds the new change too
        with open(self._path, "a", encoding="utf-8") as out:
            out.write(json.dumps(change.to_dict(), separators=(",", ":")) + "\n")
        self._lines += 1

    def _compact(self, path: str, now: float) -> None:
        """Rewrite the file from the rings, minus changes the longest window no longer needs."""
        keep: list[Change] = []
        for name, ring in self._rings.items():
            changes = list(ring)
            old = [i for i, c in enumerate(changes) if c.at < now - _LONGEST]
            if old:  # the last change before the window still says what held at its start
                changes = changes[old[-1] :]
                self._rings[name] = deque(changes, maxlen=self._per_check)
            keep.extend(changes)
        keep.sort(key=lambda c: c.at)
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(c.to_dict(), separators=(",", ":")) + "\n" for c in keep)
        os.replace(tmp, path)
        self._lines = len(keep)

    def _load(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8", errors="replace") as src:
                lines = src.readlines()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ConfigurationError(
                f"Health(history_path=...): cannot read {path!r}: {exc.strerror or exc}"
            ) from None
        for line in lines:
            try:
                raw = json.loads(line)
                change = Change(
                    at=float(raw["at"]),
                    name=str(raw["name"]),
                    kind=str(raw["kind"]),
                    previous=str(raw["previous"]),
                    status=str(raw["status"]),
                    cause=None if raw.get("cause") is None else str(raw["cause"]),
                )
            except (ValueError, KeyError, TypeError):
                continue
            self._keep(change)
        self._lines = len(lines)

    # ------------------------------------------------------------------ reading
    def changes(self, name: str) -> list[Change]:
        """The kept changes of check ``name``, oldest first."""
        with self._lock:
            return list(self._rings.get(name, ()))

    def durations(self, name: str, start: float, end: float) -> dict[str, float]:
        """Seconds spent in each status by check ``name`` within ``[start, end)``."""
        return _durations(self.changes(name), start, end)

    def uptime(self, name: str, window_s: float, now: float) -> float | None:
        """The share of observed time within the last ``window_s`` that ``name`` was not
        down (``None`` if nothing was observed)."""
        return uptime_of(self.durations(name, now - window_s, now))

    def incidents(self, name: str) -> list[Incident]:
        """The incidents of check ``name`` that the kept changes show, oldest first."""
        return _incidents(self.changes(name))

    def summary(
        self, checks: Iterable[tuple[str, str, str]], now: float, window_s: float | None = None
    ) -> dict[str, Any]:
        """The JSON of ``GET /history`` for ``checks`` (name, kind, current status)."""
        since = now - (_LONGEST if window_s is None else window_s)
        out: list[dict[str, Any]] = []
        every: list[Incident] = []
        for name, kind, status in checks:
            changes = self.changes(name)
            uptime = {
                label: uptime_of(_durations(changes, now - w, now)) for label, w in WINDOWS.items()
            }
            if window_s is not None:
                uptime["window"] = uptime_of(_durations(changes, since, now))
            incidents = [i for i in _incidents(changes) if i.end is None or i.end >= since]
            every.extend(incidents)
            out.append(
                {
                    "name": name,
                    "kind": kind,
                    "status": status,
                    "uptime": uptime,
                    "changes": [
                        {k: (_iso(v) if k == "at" else v) for k, v in c.to_dict().items()}
                        for c in changes
                        if c.at >= since
                    ],
                    "incidents": [i.to_dict(now) for i in incidents],
                }
            )
        every.sort(key=lambda i: i.start, reverse=True)
        return {
            "generated_at": _iso(now),
            "window_s": window_s,
            "checks": out,
            "incidents": [i.to_dict(now) for i in every],
        }


def _store_path(path: object) -> str:
    """``path`` as a file the store can read and append to, or a ConfigurationError naming
    ``history_path``: not a path, a directory, in a missing or read-only directory."""
    if isinstance(path, bool) or not isinstance(path, str | os.PathLike):
        raise ConfigurationError(f"Health(history_path=...): must be a file path, got {path!r}")
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError(f"Health(history_path=...): must be a file path, got {path!r}")
    if os.path.isdir(text):
        raise ConfigurationError(f"Health(history_path=...): {text!r} is a directory, not a file")
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise ConfigurationError(
            f"Health(history_path=...): the directory of {text!r} does not exist"
        )
    writable = os.access(text, os.W_OK) if os.path.exists(text) else os.access(folder, os.W_OK)
    if not writable:
        raise ConfigurationError(f"Health(history_path=...): {text!r} is not writable")
    return text


def _fields(change: Change) -> tuple[Any, ...]:
    return (change.at, change.name, change.kind, change.previous, change.status, change.cause)


def uptime_of(durations: Mapping[str, float]) -> float | None:
    """Not-down time over observed (not ``unknown``) time, or ``None`` if none was observed."""
    observed = sum(v for k, v in durations.items() if k != "unknown")
    if observed <= 0:
        return None
    return (observed - durations.get("down", 0.0)) / observed


def _durations(changes: list[Change], start: float, end: float) -> dict[str, float]:
    spent = {"ok": 0.0, "degraded": 0.0, "down": 0.0, "unknown": 0.0}
    if end <= start:
        return spent
    status, since = "unknown", start
    for change in changes:
        if change.at <= start:
            status = change.status
            continue
        if change.at >= end:
            break
        spent[status] = spent.get(status, 0.0) + (change.at - since)
        status, since = change.status, change.at
    spent[status] = spent.get(status, 0.0) + (end - since)
    return spent


def _incidents(changes: list[Change]) -> list[Incident]:
    found: list[Incident] = []
    open_: Incident | None = None
    for change in changes:
        if change.status in _BAD:
            if open_ is None:
                open_ = Incident(
                    change.name, change.kind, change.at, None, change.status, change.cause
                )
            else:
                state = open_.state if _RANK[open_.state] >= _RANK[change.status] else change.status
                # a later cause is a deeper one (the registry keeps no shallower one)
                open_ = Incident(
                    open_.name, open_.kind, open_.start, None, state, change.cause or open_.cause
                )
        elif change.status == "ok" and open_ is not None:
            found.append(
                Incident(open_.name, open_.kind, open_.start, change.at, open_.state, open_.cause)
            )
            open_ = None
    if open_ is not None:
        found.append(open_)
    return found
