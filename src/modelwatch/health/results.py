"""The values a health report is made of: :class:`CheckResult` and :class:`HealthReport`.

Both are immutable snapshots. Their ``to_dict()`` is the JSON body documented in docs/health.md
(*HTTP endpoints*), so the HTTP apps, the CLI and users' own code all read the same shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final, Literal

Status = Literal["ok", "degraded", "down", "unknown"]
"""A check's status. ``unknown`` means the check has not produced a result yet."""

OverallStatus = Literal["ok", "degraded", "down"]
"""A report's status: never ``unknown`` (an unknown check counts as half healthy)."""

Kind = Literal["model", "analysis", "dependency"]
"""What a check watches: a model, an analysis type, or a dependency (database, cache, API)."""

CircuitState = Literal["closed", "half_open", "open"]

KINDS: Final[tuple[str, ...]] = ("model", "analysis", "dependency")
STATUSES: Final[tuple[str, ...]] = ("ok", "degraded", "down", "unknown")

#: What each status is worth in the score and on the ``modelwatch.health.status`` gauge.
STATUS_VALUE: Final[Mapping[str, float]] = {"ok": 1.0, "degraded": 0.5, "down": 0.0, "unknown": 0.5}

#: How bad each status is, to combine two opinions (breaker and probe) into the worse one.
_SEVERITY: Final[Mapping[str, int]] = {"ok": 0, "unknown": 1, "degraded": 2, "down": 3}


def worse(a: Status, b: Status) -> Status:
    """The worse of two statuses (``down`` > ``degraded`` > ``unknown`` > ``ok``)."""
    return a if _SEVERITY[a] >= _SEVERITY[b] else b


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC with a ``Z`` suffix and millisecond precision (or ``None``)."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class CheckResult:
    """The latest known state of one check, as ``report()`` and the endpoints show it.

    ``status`` is the damped state (it changes only after ``flap_threshold`` consecutive
    results the other way); ``latency_s``, ``checked_at`` and ``error`` describe the most
    recent probe, so a failing probe is visible while the damping still says ``ok``.
    ``error`` is a short, scrubbed description (never a stack trace); ``circuit`` is the
    breaker state of a router backend (``"closed"``, ``"half_open"``, ``"open"``) or ``None``.
    ``cause`` is the root cause while a dependency is down (the deepest dependency that is
    down: docs/health.md, *Dependencies and cascades*), else ``None``; ``depends_on`` the
    checks this one depends on.
    """

    name: str
    kind: Kind
    status: Status
    latency_s: float | None = None
    checked_at: datetime | None = None
    error: str | None = None
    critical: bool = False
    weight: float = 1.0
    circuit: CircuitState | None = None
    cause: str | None = None
    depends_on: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """This check as the JSON object of ``GET /checks/{name}`` (docs/health.md)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "latency_s": None if self.latency_s is None else round(self.latency_s, 6),
            "checked_at": iso(self.checked_at),
            "error": self.error,
            "critical": self.critical,
            "weight": self.weight,
            "circuit": self.circuit,
            "cause": self.cause,
            "depends_on": list(self.depends_on),
        }


@dataclass(frozen=True)
class HealthReport:
    """A snapshot of every check: the overall ``status``, a weighted ``score`` and the checks.

    ``status`` is ``down`` if any critical check is down, ``degraded`` if a non-critical
    check is down or the score is below the registry's threshold, else ``ok``.
    ``score`` is the weighted mean of the checks' values (ok 1, degraded 0.5, down 0,
    unknown 0.5); with no checks it is 1.0.
    """

    status: OverallStatus
    score: float
    checked_at: datetime
    checks: tuple[CheckResult, ...] = field(default_factory=tuple)

    @classmethod
    def build(
        cls, checks: Iterable[CheckResult], *, checked_at: datetime, degraded_below: float
    ) -> HealthReport:
        """Compute status and score from ``checks`` (the rule in docs/health.md, *Status and
        score*)."""
        items = tuple(checks)
        total = sum(c.weight for c in items)
        if total > 0:
            score = sum(c.weight * STATUS_VALUE[c.status] for c in items) / total
        elif items:  # every weight is zero: an unweighted mean still says something
            score = sum(STATUS_VALUE[c.status] for c in items) / len(items)
        else:
            score = 1.0
        status: OverallStatus
        if any(c.critical and c.status == "down" for c in items):
            status = "down"
        elif any(c.status == "down" for c in items) or score < degraded_below:
            status = "degraded"
        else:
            status = "ok"
        return cls(status=status, score=round(score, 4), checked_at=checked_at, checks=items)

    @property
    def http_status(self) -> int:
        """200 for ``ok`` and ``degraded``, 503 for ``down`` (docs/health.md, *HTTP endpoints*)."""
        return 503 if self.status == "down" else 200

    def check(self, name: str) -> CheckResult | None:
        """The check called ``name``, or ``None``."""
        for c in self.checks:
            if c.name == name:
                return c
        return None

    def to_dict(self) -> dict[str, Any]:
        """This report as the JSON body of ``GET /`` (docs/health.md, *HTTP endpoints*)."""
        return {
            "status": self.status,
            "score": self.score,
            "checked_at": iso(self.checked_at),
            "checks": [c.to_dict() for c in self.checks],
        }
