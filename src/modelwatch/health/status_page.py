"""The public status page of a :class:`~modelwatch.health.Health`: one server-rendered HTML
page, no script at all, built from names and states only (never error texts, hosts or
anything a probe returned).

It shows the overall state, every check by kind with its state and a 30-day uptime bar (one
inline-SVG cell per UTC day, with a text alternative), and the current and recent incidents
with their root-cause names. States are written out in words, not only in colour.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from html import escape
from typing import TYPE_CHECKING, Any, Final

from modelwatch._safety import report_internal_error
from modelwatch.health._http import Response, _authorized
from modelwatch.health.asgi import HealthASGI
from modelwatch.health.history import History
from modelwatch.health.wsgi import HealthWSGI

if TYPE_CHECKING:
    from modelwatch.health.registry import Health

__all__ = ["StatusPageASGI", "StatusPageWSGI", "render"]

DAYS: Final = 30
_DAY: Final = 86_400.0
_LABEL: Final = {"ok": "Operational", "degraded": "Degraded", "down": "Down", "unknown": "No data"}
_OVERALL: Final = {
    "ok": "All systems operational",
    "degraded": "Some systems are degraded",
    "down": "Major outage",
}
_SECTIONS: Final = (
    ("model", "Models"),
    ("analysis", "Analysis types"),
    ("dependency", "Dependencies"),
)
# text colours reach 4.5:1 or more on white; the cells also carry their state in <title>
_CSS: Final = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1f2328;background:#fff}
header,main,footer{max-width:52rem;margin:0 auto;padding:1rem 1.5rem}
header{border-bottom:1px solid #d0d7de}footer{color:#57606a;font-size:.875rem}
h1{margin:.2rem 0}h2{margin:1.5rem 0 .5rem;font-size:1.25rem}
.overall{font-size:1.25rem;font-weight:600;padding:.6rem 1rem;border-radius:6px;border:2px solid}
ul{list-style:none;padding:0;margin:0}
.check{padding:.6rem 0;border-bottom:1px solid #eaeef2}
.row{display:flex;justify-content:space-between;gap:1rem;flex-wrap:wrap}
.name{font-weight:600;overflow-wrap:anywhere}.meta{color:#57606a;font-size:.875rem}
.s-ok{color:#116329}.s-degraded{color:#7a4d00}.s-down{color:#a40e26}.s-unknown{color:#57606a}
.overall.s-ok{background:#dafbe1}.overall.s-degraded{background:#fff8c5}
.overall.s-down{background:#ffebe9}.overall.s-unknown{background:#f6f8fa}
svg{display:block;width:100%;height:1.75rem;margin:.3rem 0}
.c-ok{fill:#2da44e}.c-degraded{fill:#d4a72c}.c-down{fill:#cf222e}.c-nodata{fill:#d0d7de}
.incident{padding:.5rem 0;border-bottom:1px solid #eaeef2}
"""


def _when(at: str | None) -> str:
    return "ongoing" if at is None else at.replace("T", " ")[:16] + " UTC"


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{int(seconds)} s"


def _day_cells(history: History, name: str, now: float) -> list[tuple[str, str]]:
    """(state, date) for each of the last :data:`DAYS` UTC days, oldest first."""
    today = datetime.fromtimestamp(now, tz=timezone.utc).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    cells = []
    for back in range(DAYS - 1, -1, -1):
        day = today - timedelta(days=back)
        start = day.timestamp()
        spent = history.durations(name, start, min(start + _DAY, now))
        if spent["down"] > 0:
            state = "down"
        elif spent["degraded"] > 0:
            state = "degraded"
        elif spent["ok"] > 0:
            state = "ok"
        else:
            state = "nodata"
        cells.append((state, day.date().isoformat()))
    return cells


def _bar(cells: list[tuple[str, str]]) -> str:
    up = sum(1 for s, _ in cells if s == "ok")
    down = sum(1 for s, _ in cells if s == "down")
    degraded = sum(1 for s, _ in cells if s == "degraded")
    label = f"{up} of {len(cells)} days fully up"
    if down:
        label += f", {down} with downtime"
    if degraded:
        label += f", {degraded} degraded"
    words = {"ok": "fully up", "down": "downtime", "degraded": "degraded", "nodata": "no data"}
    rects = "".join(
        f'<rect class="c-{s}" x="{i * 10}" y="0" width="8" height="24" rx="1">'
        f"<title>{d}: {words[s]}</title></rect>"
        for i, (s, d) in enumerate(cells)
    )
    return (
        f'<svg role="img" aria-label="{label}" viewBox="0 0 {len(cells) * 10 - 2} 24" '
        f'preserveAspectRatio="none" data-days-up="{up}"><title>{label}</title>{rects}</svg>'
    )


def _check_item(history: History, check: dict[str, Any], now: float) -> str:
    name, status = escape(check["name"]), check["status"]
    ratio = check["uptime"]["30d"]
    uptime = "no data yet" if ratio is None else f"{ratio * 100:.2f} % uptime over 30 days"
    return (
        f'<li class="check" data-check="{name}" data-state="{status}">'
        f'<div class="row"><span class="name">{name}</span>'
        f'<span class="state s-{status}">{_LABEL[status]}</span></div>'
        f"{_bar(_day_cells(history, check['name'], now))}"
        f'<div class="meta">{uptime}</div></li>'
    )


def _since(start: str, now: float) -> str:
    """``HH:MM UTC`` of an ongoing incident's start (with the date if it was not today)."""
    when = _when(start)
    today = datetime.fromtimestamp(now, tz=timezone.utc).date().isoformat()
    return when[11:] if when.startswith(today) else when


def _incident_item(incident: dict[str, Any], now: float) -> str:
    cause = incident.get("cause")
    because = f" — root cause: <strong>{escape(cause)}</strong>" if cause else ""
    state = incident["state"]
    lasted = _duration(incident["duration_s"])
    if incident["end"] is None:
        when = f"since {_since(incident['start'], now)} ({lasted} so far)"
    else:
        when = f"from {_when(incident['start'])} to {_when(incident['end'])} ({lasted})"
    return (
        f'<li class="incident" data-check="{escape(incident["check"])}">'
        f'<span class="name">{escape(incident["check"])}</span> '
        f'<span class="s-{state}">{_LABEL[state]}</span>{because}'
        f'<div class="meta">{when}</div></li>'
    )


def _incidents(
    title: str, anchor: str, items: Iterable[dict[str, Any]], none: str, now: float
) -> str:
    body = "".join(_incident_item(i, now) for i in items) or f'<li class="meta">{none}</li>'
    return f'<h3 id="{anchor}">{title}</h3><ul aria-labelledby="{anchor}">{body}</ul>'


def render(health: Health, *, title: str = "Service status", recent: int = 10) -> str:
    """The status page's HTML for ``health`` right now."""
    report = health.report()
    now = report.checked_at.timestamp()
    summary = health.history()
    history: History = health._history
    sections = []
    for kind, heading in _SECTIONS:
        checks = [c for c in summary["checks"] if c["kind"] == kind]
        if not checks:
            continue
        items = "".join(_check_item(history, c, now) for c in checks)
        sections.append(
            f'<section aria-labelledby="h-{kind}"><h2 id="h-{kind}">{heading}</h2>'
            f"<ul>{items}</ul></section>"
        )
    incidents = summary["incidents"]
    current = [i for i in incidents if i["end"] is None]
    past = [i for i in incidents if i["end"] is not None][:recent]
    checked = _when(report.checked_at.isoformat())
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1>"
        f'<p class="overall s-{report.status}" data-state="{report.status}">'
        f"{_OVERALL[report.status]}</p>"
        f'<p class="meta">Updated {checked}</p></header>'
        f"<main>{''.join(sections)}"
        '<section aria-labelledby="h-incidents"><h2 id="h-incidents">Incidents</h2>'
        f"{_incidents('Current', 'h-current', current, 'No current incidents.', now)}"
        f"{_incidents('Past 30 days', 'h-past', past, 'No incidents in the past 30 days.', now)}"
        "</section></main>"
        f"<footer><p>Uptime counts degraded time as up and leaves out time without data. "
        f"Times in UTC. Served by modelwatch.</p></footer></body></html>"
    )


def _page(health: Health, method: str, route: str, auth: str | None, token: str | None) -> Response:
    def plain(status: int, text: str, *extra: tuple[str, str]) -> Response:
        body = text.encode()
        return Response(
            status,
            [
                ("content-type", "text/plain; charset=utf-8"),
                ("content-length", str(len(body))),
                ("cache-control", "no-store"),
                *extra,
            ],
            body,
        )

    if method.upper() not in ("GET", "HEAD"):
        return plain(405, "method not allowed", ("allow", "GET, HEAD"))
    if not _authorized(token, auth):
        return plain(401, "unauthorized", ("www-authenticate", 'Bearer realm="modelwatch"'))
    if route not in ("/", "/index.html"):
        return plain(404, "not found")
    try:
        body = render(health).encode()
    except Exception as exc:  # never a stack trace on the wire
        report_internal_error("health.status_page", exc)
        return plain(500, "internal error")
    headers = [
        ("content-type", "text/html; charset=utf-8"),
        ("content-length", str(len(body))),
        # fresh enough for a person pressing reload, cheap under a crowd
        ("cache-control", "public, max-age=10" if token is None else "private, max-age=10"),
        ("x-content-type-options", "nosniff"),
        ("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ]
    return Response(200, headers, body)


class StatusPageASGI(HealthASGI):
    """The status page as an ASGI app; build it with :meth:`Health.status_page`."""

    def _answer(
        self, method: str, route: str, authorization: str | None, query: str = ""
    ) -> Response:
        return _page(self.health, method, route, authorization, self._token)


class StatusPageWSGI(HealthWSGI):
    """The status page as a WSGI app; build it with :meth:`Health.status_page_wsgi`."""

    def _answer(
        self, method: str, route: str, authorization: str | None, query: str = ""
    ) -> Response:
        return _page(self.health, method, route, authorization, self._token)
