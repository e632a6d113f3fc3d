"""Canary versions that roll themselves back: :class:`Canary` and its controller.

>>> import modelwatch
>>> router = modelwatch.Router("review", [
...     modelwatch.Backend(call_v1, model="reviewer", provider="openai", version="v1"),
...     modelwatch.Backend(call_v2, model="reviewer", provider="openai", version="v2",
...                        name="reviewer-v2", canary=modelwatch.Canary(weight=0.1, against="v1")),
... ])                                                                  # doctest: +SKIP

The candidate (the backend with ``canary=``) takes ``weight`` of the calls; the others go to
the stable version (``against``: a version or backend name) and the rest of the list as
usual, never to the candidate. Every :attr:`Canary.check_every` candidate calls, once both
versions have :attr:`Canary.min_calls` calls, the controller compares them (see
:mod:`modelwatch.resilience._canary_stats`): error ratio, p95 latency, quality score (from
:func:`modelwatch.record_quality` / :meth:`Call.record_quality`) and cost per call. On the
first regression it rolls the candidate back at once: weight 0, a ``modelwatch.canary.rollback``
log event and span event with the figures, ``modelwatch.canary.rollbacks`` +1. It stays out
for :attr:`Canary.cooldown_s`, then gets a fresh trial. After :attr:`Canary.promote_after`
clean checks in a row it is promoted (weight 1: it serves every call, the stable version
becomes its backup); :meth:`Router.promote` and :meth:`Router.rollback` decide by hand.
Every decision is logged with the numbers that caused it. State is per process.
"""

from __future__ import annotations

import math
import random
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import structlog
from opentelemetry import trace

from modelwatch import errorkinds, semconv
from modelwatch._clock import TimeSource
from modelwatch._safety import guard
from modelwatch.capture._telemetry import Attributes, register_observable, telemetry
from modelwatch.capture.cost import cost_of
from modelwatch.capture.quality import add_quality_listener
from modelwatch.capture.usage import extract_usage
from modelwatch.errors import ConfigurationError
from modelwatch.resilience import _canary_stats as stats

if TYPE_CHECKING:
    from modelwatch.capture.call import Call
    from modelwatch.resilience._members import Member

__all__ = ["Canary", "CanaryController", "CanaryState", "CanaryStatus"]

logger = structlog.get_logger("modelwatch")

CanaryState = Literal["canary", "rolled_back", "promoted"]
REASON_MANUAL: Final = "manual"
#: every ``reason`` a rollback can have (the signals of :mod:`._canary_stats`, and by hand)
REASONS: Final = ("error_ratio", "latency_p95", "quality", "quality_floor", "cost", REASON_MANUAL)


@dataclass(frozen=True)
class Canary:
    """How a candidate version is tried against the stable one (``Backend(canary=...)``).

    Args:
        weight: share of calls the candidate takes while on trial (0 < weight < 1).
        against: the stable version (a ``Backend(version=...)`` or backend name); default:
            the first backend without a canary.
        min_calls: calls each version needs before any comparison (noise does not trigger).
        min_scores: quality scores each version needs before quality is compared.
        check_every: candidate calls between two comparisons.
        max_error_ratio: roll back when the candidate's error rate is this many times the
            stable one's (and the difference is significant).
        max_latency_ratio: the same for the p95 latency of successful calls.
        max_quality_drop: roll back when the mean quality score is this much lower.
        min_quality: roll back when the candidate's mean score is below this floor.
        max_cost_ratio: roll back when the mean cost per call is this many times higher
            (``None``: cost is not compared).
        z: the one-sided z boundary every test must pass.
        promote_after: clean comparisons that promote the candidate (0: never), once its
            error rate is also shown to be under ``max_error_ratio`` x the stable one's.
        cooldown_s: how long a rolled-back candidate stays out before a fresh trial
            (``None``: until promoted or reset by hand).
    """

    weight: float = 0.1
    against: str | None = None
    min_calls: int = 200
    min_scores: int = 100
    check_every: int = 50
    max_error_ratio: float = 1.5
    max_latency_ratio: float = 1.2
    max_quality_drop: float = 0.05
    min_quality: float | None = None
    max_cost_ratio: float | None = 1.5
    z: float = 3.5
    promote_after: int = 20
    cooldown_s: float | None = 3600.0

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> ConfigurationError:
            return ConfigurationError(f"Canary {name} must be {rule}, got {getattr(self, name)!r}")

        if not _number(self.weight) or not 0.0 < self.weight < 1.0:
            raise bad("weight", "a number between 0 and 1 (exclusive)")
        for name in ("min_calls", "min_scores", "check_every", "promote_after"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (name == "check_every")
            ):
                raise bad(name, "an int >= 0" if name != "check_every" else "an int >= 1")
        for name in ("max_error_ratio", "max_latency_ratio", "z"):
            if not _number(getattr(self, name)) or not getattr(self, name) > 0:
                raise bad(name, "a number > 0")
        if self.max_cost_ratio is not None and not (
            _number(self.max_cost_ratio) and self.max_cost_ratio > 0
        ):
            raise bad("max_cost_ratio", "a number > 0 or None")
        if not _number(self.max_quality_drop) or not 0.0 <= self.max_quality_drop <= 1.0:
            raise bad("max_quality_drop", "a number in 0..1")
        if self.min_quality is not None and not (
            _number(self.min_quality) and 0.0 <= self.min_quality <= 1.0
        ):
            raise bad("min_quality", "a number in 0..1 or None")
        if self.cooldown_s is not None and not (_number(self.cooldown_s) and self.cooldown_s >= 0):
            raise bad("cooldown_s", "a number >= 0 or None")
        if self.against is not None and (not isinstance(self.against, str) or not self.against):
            raise bad("against", "a non-empty str or None")


def _number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


@dataclass(frozen=True)
class CanaryStatus:
    """A candidate as its controller sees it now."""

    backend: str
    version: str | None
    stable: str
    state: CanaryState
    weight: float
    candidate_calls: int
    stable_calls: int
    clean_checks: int
    last_reason: str | None


_controllers: weakref.WeakSet[CanaryController] = weakref.WeakSet()


class CanaryController:
    """One router's canary: picks who serves each call, compares, rolls back, promotes.

    The router asks :meth:`order` for the members of each call and reports each attempt's
    outcome to :meth:`observe`; quality scores arrive through the quality listener.
    """

    def __init__(
        self,
        router: str,
        members: Sequence[Member],
        clock: TimeSource,
        rng: random.Random | None = None,
    ) -> None:
        cands = [m for m in members if getattr(m.backend, "canary", None) is not None]
        if len(cands) != 1:
            raise ConfigurationError(f"Router {router!r}: at most one backend may have a canary")
        self.candidate = cands[0]
        policy = self.candidate.backend.canary
        assert policy is not None
        self.policy: Canary = policy
        self.stable = _stable(router, members, self.candidate, self.policy.against)
        self.router = router
        self._members = list(members)
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self.state: CanaryState = "canary"
        self.last_reason: str | None = None
        self._held_until: float | None = None
        self._reset()
        _controllers.add(self)
        with guard("canary.counter"):  # series exist at 0, so the first rollback is an increase
            counter = telemetry().instrument(semconv.CANARY_ROLLBACKS)
            for reason in REASONS:
                counter.add(0, {**self._attributes(), semconv.REASON: reason})

    def _reset(self) -> None:
        self.samples = {id(self.candidate): stats.Sample(), id(self.stable): stats.Sample()}
        self.clean_checks = 0
        self._since_check = 0

    # ------------------------------------------------------------------ routing
    @property
    def weight(self) -> float:
        """The candidate's share of calls now."""
        if self.state == "promoted":
            return 1.0
        return self.policy.weight if self.state == "canary" else 0.0

    def order(self, members: Sequence[Member]) -> list[Member]:
        """The members for one call: the candidate first when it serves this one; left out
        when it does not (a call not given to the candidate never fails over to it)."""
        self._maybe_resume()
        cand = self.candidate
        rest = [m for m in members if m is not cand]
        if self.state == "promoted":
            return [cand, *rest]
        if self.state == "canary":
            with self._lock:
                chosen = self._rng.random() < self.policy.weight
            if chosen:
                return [cand, *rest]
        return rest

    def _maybe_resume(self) -> None:
        held = self._held_until
        if held is not None and self._clock.monotonic() >= held:
            with self._lock:
                if self._held_until is None:
                    return
                self._held_until = None
                self.state = "canary"
                self._reset()
            self._log("modelwatch.canary.resume", reason="cooldown_over")

    # ------------------------------------------------------------------ outcomes
    def observe(
        self, member: Member, ok: bool, value: Any, duration: float, kind: str | None
    ) -> None:
        """One attempt's outcome: ``ok`` with the result, or the error ``kind``."""
        sample = self.samples.get(id(member))
        if sample is None or self.state != "canary":
            return
        cost = None
        if ok:
            usage = extract_usage(value)
            cost = cost_of(member.backend.model, usage.input_tokens, usage.output_tokens)
        with self._lock:
            sample.calls += 1
            if not ok and kind is not None and not errorkinds.error_rate_excluded(kind):
                sample.errors += 1
            elif ok:
                sample.latencies.append(duration)
                if cost is not None:
                    sample.costs.append(cost)
            if member is not self.candidate:
                return
            self._since_check += 1
            if self._since_check < self.policy.check_every:
                return
            self._since_check = 0
        self.check()

    def on_quality(self, score: float, member: Member) -> None:
        """A quality score of an answer ``member`` gave."""
        sample = self.samples.get(id(member))
        if sample is not None and self.state == "canary":
            with self._lock:
                sample.scores.append(score)

    def member_of(self, call: Call | None, model: str, version: str | None) -> Member | None:
        """The member a score belongs to: by the call's spec (a router attempt), else by
        ``version`` (late feedback), else by model when only one member has it."""
        if call is not None:
            spec = call._spec
            for m in self._members:  # the router's attempt specs are the member's own
                if spec is m.spec or any(spec is s for s in m._specs):
                    return m
            return None
        found = [m for m in self._members if m.backend.model == model]
        if version is not None:
            found = [m for m in found if getattr(m.backend, "version", None) == version]
        return found[0] if len(found) == 1 else None

    # ------------------------------------------------------------------ decisions
    def verdicts(self) -> list[stats.Verdict]:
        """Every comparison the policy asks for, with the samples as they are now."""
        p = self.policy
        with self._lock:
            cand, stable = self.samples[id(self.candidate)], self.samples[id(self.stable)]
            out = []
            if min(cand.calls, stable.calls) >= p.min_calls:
                out.append(stats.error_ratio(cand, stable, p.max_error_ratio, p.z))
                out.append(stats.latency(cand, stable, p.max_latency_ratio, p.z))
                if p.max_cost_ratio is not None:
                    out.append(stats.cost(cand, stable, p.max_cost_ratio, p.z))
            if min(len(cand.scores), len(stable.scores)) >= p.min_scores:
                out.append(stats.quality(cand, stable, p.max_quality_drop, p.min_quality, p.z))
        return out

    def check(self) -> stats.Verdict | None:
        """Compare now; roll back on the first regression, promote after enough clean
        checks. Returns the regressed verdict, if any."""
        if self.state != "canary":
            return None
        verdicts = self.verdicts()
        if not verdicts:
            return None
        for v in verdicts:
            if v.regressed:
                self._rollback(v.signal, v.figures())
                return v
        p = self.policy
        with self._lock:
            self.clean_checks += 1
            promote = 0 < p.promote_after <= self.clean_checks and stats.error_non_inferior(
                self.samples[id(self.candidate)], self.samples[id(self.stable)],
                p.max_error_ratio, p.z,
            )  # fmt: skip
        if promote:
            self._promote("clean_checks", {"clean_checks": self.clean_checks})
        return None

    def rollback(self, reason: str = REASON_MANUAL) -> None:
        """Roll the candidate back now (``router.rollback(name)``)."""
        self._rollback(reason, {})

    def promote(self) -> None:
        """Promote the candidate now (``router.promote(name)``)."""
        self._promote(REASON_MANUAL, {})

    def _rollback(self, reason: str, figures: dict[str, Any]) -> None:
        with self._lock:
            if self.state == "rolled_back":
                return
            self.state = "rolled_back"
            self.last_reason = reason
            cooldown = self.policy.cooldown_s
            self._held_until = None if cooldown is None else self._clock.monotonic() + cooldown
        attrs = self._attributes()
        with guard("canary.rollback"):
            telemetry().instrument(semconv.CANARY_ROLLBACKS).add(
                1, {**attrs, semconv.REASON: reason}
            )
        self._event(semconv.EVENT_CANARY_ROLLBACK, reason, figures)

    def _promote(self, reason: str, figures: dict[str, Any]) -> None:
        with self._lock:
            if self.state == "promoted":
                return
            self.state = "promoted"
            self.last_reason = reason
            self._held_until = None
        self._event(semconv.EVENT_CANARY_PROMOTE, reason, figures)

    def _event(self, name: str, reason: str, figures: dict[str, Any]) -> None:
        fields = {**figures, **self._figures()}
        with guard("canary.event"):
            span = trace.get_current_span()
            if span.is_recording():
                span.add_event(
                    name,
                    {
                        **self._attributes(),
                        semconv.REASON: reason,
                        **{f"modelwatch.canary.{k}": v for k, v in fields.items()},
                    },
                )
        self._log(name, reason=reason, **fields)

    def _figures(self) -> dict[str, Any]:
        cand, stable = self.samples[id(self.candidate)], self.samples[id(self.stable)]
        return {
            "candidate_calls": cand.calls,
            "candidate_error_rate": round(cand.error_rate, 6),
            "stable_calls": stable.calls,
            "stable_error_rate": round(stable.error_rate, 6),
        }

    def _log(self, event: str, **fields: Any) -> None:
        with guard("canary.log"):
            logger.warning(
                event,
                router=self.router,
                candidate=self.candidate.backend.name,
                version=getattr(self.candidate.backend, "version", None),
                stable=self.stable.backend.name,
                weight=self.weight,
                **fields,
            )

    def _attributes(self) -> dict[str, Any]:
        attrs = {
            semconv.MODELWATCH_ROUTER: self.router,
            semconv.MODELWATCH_BACKEND: self.candidate.backend.name,
        }
        version = getattr(self.candidate.backend, "version", None)
        if version is not None:
            attrs[semconv.MODELWATCH_VERSION] = version
        return attrs

    def status(self) -> CanaryStatus:
        """The candidate's state and sample sizes, from memory."""
        self._maybe_resume()
        return CanaryStatus(
            backend=self.candidate.backend.name,
            version=getattr(self.candidate.backend, "version", None),
            stable=self.stable.backend.name,
            state=self.state,
            weight=self.weight,
            candidate_calls=self.samples[id(self.candidate)].calls,
            stable_calls=self.samples[id(self.stable)].calls,
            clean_checks=self.clean_checks,
            last_reason=self.last_reason,
        )


def canary_for(
    router: str, members: Sequence[Member], clock: TimeSource
) -> CanaryController | None:
    """The router's controller, or ``None`` when no backend has a canary (the common case)."""
    if not any(getattr(m.backend, "canary", None) is not None for m in members):
        return None
    return CanaryController(router, members, clock)


def _stable(router: str, members: Sequence[Member], cand: Member, against: str | None) -> Member:
    for m in members:
        if m is cand:
            continue
        if against is None or against in (getattr(m.backend, "version", None), m.backend.name):
            return m
    raise ConfigurationError(
        f"Router {router!r}: Canary(against={against!r}) names no other backend's version or name"
    )


def _on_quality(
    score: float,
    _metric: str,
    model: str,
    _analysis: str | None,
    version: str | None,
    call: Call | None,
) -> None:
    for controller in list(_controllers):
        member = controller.member_of(call, model, version)
        if member is not None:
            controller.on_quality(score, member)


add_quality_listener(_on_quality)


def _observe_weight() -> Iterable[tuple[float, Attributes]]:
    for controller in list(_controllers):
        controller._maybe_resume()
        yield controller.weight, controller._attributes()


register_observable(semconv.CANARY_WEIGHT, _observe_weight)
