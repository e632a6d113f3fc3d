"""What the demo prints: a live table redrawn in place (terminals), periodic plain lines
(pipes, CI, ``--no-live``), and the end-of-run summary.

Plain ANSI escape codes, no extra dependency: the live view moves the cursor back up over
its previous frame and redraws it, so scrollback keeps only the header and the summary.
"""

from __future__ import annotations

import shutil
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TextIO

from modelwatch.demo.engine import AnalysisSpec, Serving
from modelwatch.demo.record import (
    AttemptRecord,
    Recorder,
    RequestRecord,
    error_counts,
    percentile,
)
from modelwatch.demo.scenario import Scenario

__all__ = [
    "Endpoints",
    "LiveView",
    "PlainView",
    "Style",
]

_BAR_WIDTH: Final = 40
_EVENT_LINES: Final = 7
#: How often the live view redraws, seconds.
FRAME_INTERVAL_S: Final = 0.25


@dataclass(frozen=True)
class Endpoints:
    """Where the demo serves what (``None``: not served)."""

    models: str
    health: str
    metrics: str | None
    otlp: str | None = None
    #: the Prometheus server evaluating the generated rules (``None``: not running)
    prometheus_server: str | None = None
    #: why no Prometheus runs
    alerts_note: str = ""
    #: ``--workers N``: each worker's base URL
    workers: tuple[str, ...] = ()
    #: the public status page (``Health.status_page_wsgi()``), ``None``: not served
    status_page: str | None = None

    def lines(self) -> list[str]:
        """The endpoint list printed at the start."""
        out = [f"    fake model server  {self.models}   (HF Inference API + OpenAI-compatible /v1)"]
        for i, url in enumerate(self.workers):
            out.append(f"    engine worker w{i + 1}  {url}   (POST /analyze/<analysis>, /health)")
        if not self.workers:
            out.append(
                f"    health             {self.health}   (/live /ready /models /analysis "
                "/dependencies /checks/<name> /history)"
            )
        if self.status_page is not None:
            whose = " (w1's health)" if self.workers else ""
            out.append(
                f"    status page        {self.status_page}   (open it in a browser{whose}: "
                "states, uptime bars, incidents)"
            )
        if self.workers:
            out.append("    prometheus         each worker's own /metrics, found through file_sd")
        elif self.metrics is not None:
            out.append(f"    prometheus         {self.metrics}")
        else:
            out.append("    prometheus         not served (the application owns the providers)")
        if self.prometheus_server is not None:
            out.append(
                f"    Prometheus server  {self.prometheus_server}/alerts   "
                "(the generated rules, evaluated on that /metrics)"
            )
        else:
            out.append(f"    Prometheus server  not running ({self.alerts_note})")
        if self.otlp is not None:
            out.append(f"    OTLP export        {self.otlp}")
        return out


class Style:
    """ANSI colours, or nothing when ``enabled`` is false."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        """Bold text."""
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        """Dim text."""
        return self._wrap("2", text)

    def red(self, text: str) -> str:
        """Red text."""
        return self._wrap("31", text)

    def green(self, text: str) -> str:
        """Green text."""
        return self._wrap("32", text)

    def yellow(self, text: str) -> str:
        """Yellow text."""
        return self._wrap("33", text)

    def state(self, state: str) -> str:
        """A circuit state, coloured: closed green, half-open yellow, open red."""
        label = state.replace("_", "-")
        if state == "open":
            return self.red(label.upper())
        if state == "half_open":
            return self.yellow(label)
        return self.green(label)

    def rate(self, value: float | None) -> str:
        """A success rate, coloured by how good it is."""
        if value is None:
            return "   -  "
        text = f"{value:6.1%}"
        if value >= 0.99:
            return self.green(text)
        if value >= 0.9:
            return self.yellow(text)
        return self.red(text)


def _pad(text: str, width: int) -> str:
    """Left-justify ``text`` to ``width`` visible characters (ANSI codes take none)."""
    visible = len(_strip(text))
    return text + " " * max(0, width - visible)


def _strip(text: str) -> str:
    out, skipping = [], False
    for ch in text:
        if ch == "\x1b":
            skipping = True
        elif skipping and ch == "m":
            skipping = False
        elif not skipping:
            out.append(ch)
    return "".join(out)


def _seconds(value: float | None) -> str:
    return "   -  " if value is None else f"{value:5.2f}s"


def _ok_rate(records: Sequence[AttemptRecord] | Sequence[RequestRecord]) -> float | None:
    if not records:
        return None
    return sum(1 for r in records if r.error is None) / len(records)


class _Frame:
    """Numbers for one moment, shared by the live and the plain view."""

    def __init__(self, engine: Serving, recorder: Recorder, window_s: float) -> None:
        self.now = recorder.now()
        since = self.now - window_s
        self.requests = [r for r in recorder.requests() if r.end > since]
        self.attempts = [a for a in recorder.attempts() if a.end > since]
        self.all_requests = recorder.requests()
        self.all_calls = recorder.attempts("user", "probe")
        self.status = engine.circuit_states()


class LiveView:
    """The in-place table for terminals."""

    def __init__(
        self,
        out: TextIO,
        engine: Serving,
        recorder: Recorder,
        scenario: Scenario,
        *,
        color: bool = True,
    ) -> None:
        self._out = out
        self._engine = engine
        self._recorder = recorder
        self._scenario = scenario
        self._style = Style(color)
        self._lines = 0
        self._window = max(3.0, scenario.duration / 10)

    def start(self) -> None:
        """Hide the cursor."""
        self._out.write("\x1b[?25l")
        self._out.flush()

    def update(self) -> None:
        """Redraw the table over the previous one."""
        size = shutil.get_terminal_size((100, 40))
        width = max(40, size.columns - 1)
        # every line is cut to the terminal's width and the frame to its height: a wrapped
        # line, or a frame taller than the screen, would scroll, and the next frame (which
        # moves the cursor up one row per line) would no longer cover the last one
        lines = [_fit(line, width) for line in self.render()][: max(5, size.lines - 1)]
        buf = []
        if self._lines:
            buf.append(f"\x1b[{self._lines}F")
        for line in lines:
            buf.append(f"{line}\x1b[K\n")
        buf.append("\x1b[J")
        self._out.write("".join(buf))
        self._out.flush()
        self._lines = len(lines)

    def finish(self) -> None:
        """Draw the last frame and show the cursor again."""
        self.update()
        self._out.write("\x1b[?25h")
        self._out.flush()

    def render(self) -> list[str]:
        """The frame's lines (uncut)."""
        s = self._style
        frame = _Frame(self._engine, self._recorder, self._window)
        sc = self._scenario
        t = min(frame.now, sc.duration)
        done = int(_BAR_WIDTH * t / sc.duration)
        marks = ["-"] * _BAR_WIDTH
        for at in (sc.incident_at, sc.errors_at, sc.slow_at, sc.recover_at, sc.calm_at):
            marks[min(_BAR_WIDTH - 1, int(_BAR_WIDTH * at / sc.duration))] = "|"
        bar = s.bold("#" * done) + s.dim("".join(marks[done:]))
        lines = [
            f"[{bar}] {t:5.1f}/{sc.duration:g}s  {s.bold(sc.phase_at(t).name)}",
            "",
            s.bold(
                f"{'analysis':<24}{'answered by':<34}{'users ok':>8}{'p95':>8}{'failovers':>11}"
            ),
        ]
        for spec in self._engine.analyses.values():
            lines.append(self._analysis_row(frame, spec))
        lines += [
            "",
            s.bold(
                f"{'model':<34}{'role':<9}{'circuit':<10}{'calls':>6}{'ok':>8}{'p95':>8}  errors"
            ),
        ]
        for spec in self._engine.analyses.values():
            for role, model in zip(("primary", "backup"), spec.models, strict=True):
                lines.append(self._model_row(frame, spec.name, model.model, role))
        lines += ["", s.dim(f"numbers over the last {self._window:g} s; recent events:")]
        events = self._recorder.recent_events(_EVENT_LINES)
        for event in events:
            text = _event_text(s, event.kind, f"{event.kind:<8} {event.text}")
            lines.append(f"  {event.at:6.1f}s  {text}")
        lines += [""] * (_EVENT_LINES - len(events))
        return lines

    def _analysis_row(self, frame: _Frame, spec: AnalysisSpec) -> str:
        s = self._style
        reqs = [r for r in frame.requests if r.analysis == spec.name]
        p95 = percentile([r.duration for r in reqs], 0.95)
        moved = sum(1 for r in reqs if r.failed_over)
        served = Counter(r.served_by for r in reqs if r.served_by is not None)
        if served:
            model, n = served.most_common(1)[0]
            share = n / sum(served.values())
            who = model.rsplit("/", 1)[-1][:26]
            who = f"{who} {share:.0%}" if share < 1 else who
            answered = s.yellow(who) if model != spec.primary.model else who
        else:
            answered = s.dim("-")
        return (
            f"{spec.name:<24}{_pad(answered, 34)}{_rjust(s.rate(_ok_rate(reqs)), 8)}"
            f"{_seconds(p95):>8}{moved:>11}"
        )

    def _model_row(self, frame: _Frame, analysis: str, model: str, role: str) -> str:
        s = self._style
        rows = [a for a in frame.attempts if a.model == model]
        status = frame.status.get((analysis, model))
        state = s.state(status) if status else "?"
        errors = error_counts(rows)
        text = ", ".join(f"{k} {n}" for k, n in errors.most_common()) or s.dim("-")
        p95 = percentile([a.duration for a in rows], 0.95)
        return (
            f"{model[:33]:<34}{role:<9}{_pad(state, 10)}{len(rows):>6}"
            f"{_rjust(s.rate(_ok_rate(rows)), 8)}{_seconds(p95):>8}  {text}"
        )


def _rjust(text: str, width: int) -> str:
    """Right-justify ``text`` to ``width`` visible characters."""
    return " " * max(0, width - len(_strip(text))) + text


def _fit(line: str, width: int) -> str:
    """Cut ``line`` to ``width`` visible characters, keeping (and closing) ANSI codes."""
    if len(_strip(line)) <= width:
        return line
    out, visible, in_code = [], 0, False
    for ch in line:
        if ch == "\x1b":
            in_code = True
        if in_code:
            out.append(ch)
            in_code = ch != "m"
            continue
        if visible >= width - 1:
            break
        out.append(ch)
        visible += 1
    return "".join(out) + "\u2026\x1b[0m"


def _event_text(s: Style, kind: str, text: str) -> str:
    if kind == "circuit":
        return (
            s.red(text)
            if "-> open" in text
            else s.green(text)
            if "-> closed" in text
            else s.yellow(text)
        )
    if kind == "scenario":
        return s.bold(text)
    if kind in ("users", "internal"):
        return s.red(text)
    if kind == "alert":
        return s.yellow(text) if " firing: " in text else s.green(text)
    return text


class PlainView:
    """Periodic status lines and every event, for pipes and CI."""

    def __init__(
        self, out: TextIO, engine: Serving, recorder: Recorder, scenario: Scenario
    ) -> None:
        self._out = out
        self._engine = engine
        self._recorder = recorder
        self._scenario = scenario
        self._seen = 0
        self._window = max(3.0, scenario.duration / 10)

    def events(self) -> None:
        """Print the events logged since the last call."""
        events, self._seen = self._recorder.events(self._seen)
        for event in events:
            self._out.write(f"[{event.at:6.1f}s] {event.kind:<8} {event.text}\n")
        self._out.flush()

    def status(self) -> None:
        """Print one status line."""
        self.events()
        frame = _Frame(self._engine, self._recorder, self._window)
        users = _ok_rate(frame.all_requests)
        models = _ok_rate(frame.all_calls)
        moved = sum(1 for r in frame.all_requests if r.failed_over)
        circuits = " ".join(
            f"{model.rsplit('/', 1)[-1]}={state}"
            for (_, model), state in frame.status.items()
            if state != "closed"
        )
        self._out.write(
            f"[{frame.now:6.1f}s] status   {self._scenario.phase_at(frame.now).name}: "
            f"requests {len(frame.all_requests)}, users ok {_fmt_rate(users)}, "
            f"model calls ok {_fmt_rate(models)}, failovers {moved}, "
            f"circuits {circuits or 'all closed'}\n"
        )
        self._out.flush()


def _fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def default_stream() -> TextIO:
    """Where the demo writes (stdout)."""
    return sys.stdout


def watch(
    out: TextIO,
    engine: Serving,
    recorder: Recorder,
    scenario: Scenario,
    stop: threading.Event,
    *,
    live: bool,
) -> None:
    """Show the run until it ends or ``stop`` is set."""
    duration = scenario.duration
    if live:
        view = LiveView(out, engine, recorder, scenario, color=True)
        view.start()
        try:
            while not stop.wait(FRAME_INTERVAL_S) and recorder.now() < duration:
                view.update()
        finally:
            view.finish()
        return
    plain = PlainView(out, engine, recorder, scenario)
    every = max(1.0, duration / 12)
    next_status = every
    while not stop.wait(FRAME_INTERVAL_S) and recorder.now() < duration:
        plain.events()
        if recorder.now() >= next_status:
            plain.status()
            next_status += every
    plain.status()
