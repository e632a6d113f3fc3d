"""The health registry: :class:`Health` holds the checks, answers :meth:`Health.report`
from cached results, and serves them over HTTP. The probing itself is
:class:`~modelwatch.health.probing.ProbeEngine`'s, which :class:`Health` extends.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import weakref
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from modelwatch import semconv
from modelwatch._safety import guard, report_internal_error
from modelwatch.capture._bounded import OVERFLOW_ATTRIBUTES, BoundedKeys
from modelwatch.capture._telemetry import register_observable
from modelwatch.errors import ConfigurationError
from modelwatch.health._check import (
    Check,
    apply_breaker,
    backend_key,
    flag,
    positive,
    share,
    threshold,
)
from modelwatch.health._graph import check_acyclic, dependency_names, graph_dict, reaches
from modelwatch.health._workers import Clock, Probe, is_async_probe
from modelwatch.health.history import MAX_WINDOW_S, Change, History
from modelwatch.health.probing import ProbeEngine
from modelwatch.health.results import KINDS, STATUS_VALUE, HealthReport, Kind, Status

if TYPE_CHECKING:
    from modelwatch.health.asgi import HealthASGI
    from modelwatch.health.status_page import StatusPageASGI, StatusPageWSGI
    from modelwatch.health.wsgi import HealthWSGI

__all__ = ["Health"]

_live: weakref.WeakSet[Health] = weakref.WeakSet()
#: the ``modelwatch.health.status`` series (check, kind, cause): bounded like every registry
_status_series = BoundedKeys("health.status")
_live_lock = threading.Lock()
#: statuses an incident is made of: a cause found during one is kept in the history
_BAD = ("degraded", "down")


def _observe_status() -> Iterator[tuple[float, dict[str, Any]]]:
    """The ``modelwatch.health.status`` gauge: one point per known check of every live Health."""
    with _live_lock:
        registries = list(_live)
    for health in registries:
        for check in health.report().checks:
            if check.status == "unknown":
                continue
            attributes: dict[str, Any] = {
                semconv.HEALTH_CHECK: check.name,
                semconv.HEALTH_KIND: check.kind,
            }
            if check.cause is not None:
                attributes[semconv.HEALTH_CAUSE] = check.cause
            if not _status_series.admit(tuple(attributes.items())):
                attributes = dict(OVERFLOW_ATTRIBUTES)
            yield STATUS_VALUE[check.status], attributes


register_observable(semconv.HEALTH_STATUS, _observe_status)


def _observe_ready() -> Iterator[tuple[float, dict[str, Any]]]:
    """The ``modelwatch.health.ready`` gauge: 1 while ``/ready`` would answer 200, else 0
    (the process is ready only if every live registry is)."""
    with _live_lock:
        registries = list(_live)
    if registries:
        ready = all(health.report().http_status == 200 for health in registries)
        yield (1.0 if ready else 0.0), {}


register_observable(semconv.HEALTH_READY, _observe_ready)


def _reset_after_fork() -> None:
    """Forked children (gunicorn, Celery prefork) get working registries, probing stopped."""
    global _live_lock
    _live_lock = threading.Lock()
    _status_series.reset_after_fork()
    for health in list(_live):
        with guard("health.after_fork"):
            health._after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_reset_after_fork)


class Health(ProbeEngine):
    """A registry of health checks with background probing and HTTP endpoints.

    ::

        health = modelwatch.Health()
        health.add("google/flan-t5-large", probe=ping_flan, kind="model", critical=True)
        health.add("redis", probe=redis_client.ping, kind="dependency", critical=True)
        health.add_router(router)        # one model check per backend, fed by its breaker
        with health:                     # start() ... stop()
            app.mount("/health", health.asgi())

    ``flap_threshold`` is how many consecutive results the other way a check needs before
    its status changes (the first result always counts at once). ``degraded_below`` is the
    score under which the overall status is ``degraded``. ``jitter`` spreads each interval
    by ±that fraction so checks do not probe in lock-step. ``probe_threads`` is how many
    sync probes may run at once (threads stuck in hung probes come on top, one per hung
    check at most). ``history_path`` is an optional JSON-lines file keeping the state
    changes across restarts; ``history_size`` the changes kept per check (see
    :meth:`history`). ``clock`` and ``rng`` are for tests.
    """

    def __init__(
        self,
        *,
        flap_threshold: int = 2,
        degraded_below: float = 0.9,
        jitter: float = 0.1,
        probe_threads: int = 8,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        history_path: str | os.PathLike[str] | None = None,
        history_size: int = 1000,
    ) -> None:
        if (
            isinstance(degraded_below, bool)
            or not isinstance(degraded_below, int | float)
            or not 0.0 <= degraded_below <= 1.0
        ):
            raise ConfigurationError(
                f"Health(degraded_below=...): must be a number within 0..1, got {degraded_below!r}"
            )
        super().__init__(
            flap_threshold=flap_threshold,
            jitter=jitter,
            probe_threads=probe_threads,
            clock=clock,
            rng=rng,
        )
        self.degraded_below = float(degraded_below)
        self._history = History(path=history_path, per_check=history_size)
        with _live_lock:
            _live.add(self)

    # ------------------------------------------------------------------ registration
    def add(
        self,
        name: str,
        probe: Probe,
        *,
        kind: Kind = "model",
        timeout_s: float = 5.0,
        interval_s: float = 30.0,
        critical: bool = False,
        weight: float = 1.0,
        down_interval_s: float | None = None,
        flap_threshold: int | None = None,
        depends_on: Iterable[str] | str = (),
    ) -> None:
        """Register a check called ``name`` whose ``probe`` (sync or ``async def``) runs
        every ``interval_s`` (±jitter), at most ``timeout_s`` each time, and every
        ``down_interval_s`` while failing (default: a fifth of the interval, at least 1 s).

        ``kind`` is ``"model"``, ``"analysis"`` or ``"dependency"``. A ``critical`` check that
        is down makes the whole service down (and ``/ready`` answer 503); ``weight`` is its
        share of the score. ``depends_on`` names the checks this one needs (they may be
        added later): while one is down, this check reports it as its ``cause``. Raises
        :class:`~modelwatch.errors.ConfigurationError` (a ``ValueError``) naming the
        argument if one is invalid, the name is taken or ``depends_on`` closes a cycle.
        """
        if not callable(probe):
            raise ConfigurationError(
                f"add({name!r}, probe=...): probe must be callable, got {probe!r}"
            )
        self._register(
            self._build(
                name,
                probe,
                kind=kind,
                timeout_s=timeout_s,
                interval_s=interval_s,
                critical=critical,
                weight=weight,
                down_interval_s=down_interval_s,
                flap_threshold=flap_threshold,
                depends_on=dependency_names(name, depends_on),
            )
        )

    def add_router(
        self,
        router: Any,
        *,
        critical: bool = False,
        weight: float = 1.0,
        timeout_s: float = 5.0,
        interval_s: float = 30.0,
        depends_on: Iterable[str] | str = (),
    ) -> list[str]:
        """Add one ``model`` check per backend of ``router`` (a :class:`modelwatch.Router`),
        named after the backend's model (or after the backend's name, if two backends of the
        router share a model); returns the names. All are added, or none.

        A backend's status is its breaker state, read live at every report (open is
        ``down``, half-open ``degraded``), combined with its probe if the backend has one
        (the worse of the two wins). The breaker's own thresholds do the damping, so a
        primary whose breaker opens shows as down in the very next report. ``depends_on``
        applies to every backend (e.g. the check of the inference endpoint's host).
        """
        if not callable(getattr(router, "status", None)):
            raise ConfigurationError(
                f"add_router(router): router must be a modelwatch.Router, got {router!r}"
            )
        statuses = list(router.status())
        probes = {
            backend_key(b): getattr(b, "probe", None) for b in getattr(router, "backends", ()) or ()
        }
        models = [str(s.model) for s in statuses]
        checks = []
        for backend in statuses:
            key = backend_key(backend)
            model = str(backend.model)
            probe = probes.get(key)
            if probe is not None and not callable(probe):
                probe = None
            check = self._build(
                model if models.count(model) == 1 else key,
                probe,
                kind="model",
                timeout_s=timeout_s,
                interval_s=interval_s,
                critical=critical,
                weight=weight,
                down_interval_s=None,
                flap_threshold=None,
                depends_on=dependency_names(key, depends_on),
            )
            check.router = router
            check.backend = key
            apply_breaker(check, backend)
            checks.append(check)
        self._register(*checks)
        return [c.name for c in checks]

    def _build(
        self,
        name: str,
        probe: Probe | None,
        *,
        kind: str,
        timeout_s: float,
        interval_s: float,
        critical: bool,
        weight: float,
        down_interval_s: float | None,
        flap_threshold: int | None,
        depends_on: tuple[str, ...] = (),
    ) -> Check:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"add(name): a check needs a non-empty name, got {name!r}")
        if not isinstance(kind, str) or kind not in KINDS:
            raise ConfigurationError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        timeout = positive("timeout_s", timeout_s)
        interval = positive("interval_s", interval_s)
        if down_interval_s is None:
            down_interval = min(interval, max(interval / 5.0, 1.0))
        else:
            down_interval = positive("down_interval_s", down_interval_s)
        return Check(
            name=name,
            kind=cast(Kind, kind),
            probe=probe,
            is_async=probe is not None and is_async_probe(probe),
            timeout_s=timeout,
            interval_s=interval,
            down_interval_s=down_interval,
            critical=flag("critical", critical),
            weight=share("weight", weight),
            depends_on=depends_on,
            flap_threshold=self._flap_threshold
            if flap_threshold is None
            else threshold(flap_threshold),
        )

    def _register(self, *checks: Check) -> None:
        """Add ``checks`` all at once, or none of them if any name is taken."""
        with self._lock:
            seen: set[str] = set()
            for check in checks:
                if check.name in self._checks or check.name in seen:
                    raise ConfigurationError(f"a check called {check.name!r} already exists")
                seen.add(check.name)
            edges = {n: c.depends_on for n, c in self._checks.items() if c.depends_on}
            edges.update({c.name: c.depends_on for c in checks if c.depends_on})
            check_acyclic(edges, [c.name for c in checks if c.depends_on])
            for check in checks:
                self._checks[check.name] = check
        self._wake.set()

    def __len__(self) -> int:
        return len(self._checks)

    def __contains__(self, name: object) -> bool:
        return name in self._checks

    @property
    def names(self) -> list[str]:
        """The checks' names, in the order they were added."""
        with self._lock:
            return list(self._checks)

    def report(self, *, kind: Kind | None = None) -> HealthReport:
        """The current health, from cached results: never runs a probe, never waits.

        With ``kind``, only the checks of that kind (and a status and score over them).
        """
        self._refresh_circuits()
        changes: list[tuple[Check, Status, Status]] = []
        with self._lock:
            checks = [c for c in self._checks.values() if kind is None or c.kind == kind]
            causes = self._causes()
            results = []
            recaused: list[Check] = []
            edges = {n: c.depends_on for n, c in self._checks.items() if c.depends_on}
            for check in checks:
                results.append(check.snapshot(causes.get(check.name)))
                self._note_change(check, changes)
                cause = causes.get(check.name)
                if (
                    cause is not None
                    and cause != check.cause
                    and check.reported in _BAD
                    and (check.cause is None or reaches(edges, check.cause, cause))
                ):
                    check.cause = cause  # a deeper root cause became known while it was down
                    recaused.append(check)
        self._announce(changes)
        self._record_causes([c for c in recaused if all(c is not x for x, _, _ in changes)])
        now = datetime.fromtimestamp(self._clock.time(), tz=timezone.utc)
        return HealthReport.build(results, checked_at=now, degraded_below=self.degraded_below)

    def graph(self) -> dict[str, Any]:
        """The dependency graph (the body of ``GET /graph``): ``nodes`` (every check with
        its ``kind``, ``status``, ``critical`` and ``cause``; a dependency named but never
        added shows as ``unknown`` with ``declared: false``) and ``edges`` (``from`` depends
        on ``to``)."""
        report = self.report()
        with self._lock:
            edges = {n: c.depends_on for n, c in self._checks.items() if c.depends_on}
        nodes = [
            {"name": c.name, "kind": c.kind, "status": c.status, "critical": c.critical}
            for c in report.checks
        ]
        return graph_dict(nodes, edges, {c.name: c.cause for c in report.checks if c.cause})

    def _tick(self) -> None:
        """While probing runs, read the routers' breakers every round, so a breaker that
        opens is logged (``modelwatch.health.state_change``) even if nobody asks."""
        if any(c.router is not None for c in list(self._checks.values())):
            self.report()

    def _refresh_circuits(self) -> None:
        """Read every router's breaker states (in-memory, fast) into its checks."""
        with self._lock:
            routers: dict[int, tuple[Any, list[Check]]] = {}
            for check in self._checks.values():
                if check.router is not None:
                    routers.setdefault(id(check.router), (check.router, []))[1].append(check)
        for router, checks in routers.values():
            try:
                by_key = {backend_key(s): s for s in router.status()}
            except Exception as exc:
                report_internal_error("health.router_status", exc)
                by_key = {}
            with self._lock:
                for check in checks:
                    apply_breaker(check, by_key.get(check.backend or check.name))

    def _announce(self, changes: list[tuple[Check, Status, Status]]) -> None:
        super()._announce(changes)
        at = self._clock.time()
        for check, previous, status in changes:  # statuspage's hook: keep every change
            cause = getattr(check, "cause", None)
            self._history.record(
                Change(
                    at,
                    check.name,
                    check.kind,
                    previous,
                    status,
                    cause if isinstance(cause, str) else None,
                )
            )

    def _record_causes(self, checks: list[Check]) -> None:
        """Keep a new, deeper root cause of a check that stays down (or degraded) as a change
        with the same status, so that its incident names the real cause: a dependent probed a
        moment before its dependency (or its dependency's dependency) turned down had none (or
        only the nearer one). A shallower cause later (the root recovered first) is not kept."""
        at = self._clock.time()
        for check in checks:
            status = check.reported
            self._history.record(Change(at, check.name, check.kind, status, status, check.cause))

    def history(self, window_s: float | None = None) -> dict[str, Any]:
        """Uptime ratios per check over 24 h / 7 d / 30 d (and ``window_s``, if given), their
        state changes and incidents (those within ``window_s``, default 30 d): the JSON of
        ``GET /history``. See :mod:`modelwatch.health.history`."""
        if window_s is not None:
            window_s = positive("history(window_s=...)", window_s)
            if window_s > MAX_WINDOW_S:
                raise ConfigurationError(
                    f"history(window_s=...): at most {MAX_WINDOW_S:g} s (30 days, what the "
                    f"history keeps), got {window_s!r}"
                )
        checks = [(c.name, c.kind, c.status) for c in self.report().checks]
        return self._history.summary(checks, self._clock.time(), window_s)

    def run_once(self, names: Iterable[str] | None = None) -> HealthReport:
        """Probe the checks (all, or ``names``) now, wait for them — each at most its
        timeout — and return the report. Useful at start-up, in scripts and in tests.

        A check whose previous probe is still stuck is not probed again (it fails again).
        Raises ``KeyError`` for an unknown name.
        """
        self._probe_now(names)
        return self.report()

    async def arun_once(self, names: Iterable[str] | None = None) -> HealthReport:
        """:meth:`run_once` from async code: waits in a worker thread, so the loop keeps
        running the async probes it waits for."""
        return await asyncio.to_thread(self.run_once, names)

    def __enter__(self) -> Health:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def asgi(self, *, token: str | None = None) -> HealthASGI:
        """An ASGI app serving the endpoints of docs/health.md (*HTTP endpoints*); mount it
        in Starlette or FastAPI::

            app.mount("/health", health.asgi())

        With ``token``, every route but ``/live`` needs ``Authorization: Bearer <token>``.
        """
        from modelwatch.health.asgi import HealthASGI

        return HealthASGI(self, token=token)

    def wsgi(self, *, token: str | None = None) -> HealthWSGI:
        """A WSGI app serving the endpoints of docs/health.md (*HTTP endpoints*), for Flask,
        Django or any WSGI server.

        With ``token``, every route but ``/live`` needs ``Authorization: Bearer <token>``.
        """
        from modelwatch.health.wsgi import HealthWSGI

        return HealthWSGI(self, token=token)

    def status_page(self, *, token: str | None = None) -> StatusPageASGI:
        """The public HTML status page as an ASGI app (names and states only, never errors)::

        app.mount("/status", health.status_page())
        """
        from modelwatch.health.status_page import StatusPageASGI

        return StatusPageASGI(self, token=token)

    def status_page_wsgi(self, *, token: str | None = None) -> StatusPageWSGI:
        """The same status page as a WSGI app (Flask, Django)."""
        from modelwatch.health.status_page import StatusPageWSGI

        return StatusPageWSGI(self, token=token)
