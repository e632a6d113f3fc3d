"""The one table of error kinds: what each kind *means* to the router, the breaker and the SLO.

:func:`modelwatch.classify` maps an exception to one of these kinds; everything that has to
decide what a kind implies reads this table and nothing else: the router's failover and
retry decisions, the breaker policy's default ``ignore`` set, the rate-limit bench, the
generated alert rules (which kinds count against the SLO, which have an alert of their own)
and the demo. ``docs/router.md``'s table is pinned to it by a test.

Adding an error kind means adding a row here (and its name in :mod:`modelwatch.semconv`),
then teaching :func:`modelwatch.classify` where it comes from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from modelwatch import semconv

__all__ = [
    "BREAKER_IGNORED",
    "ERROR_RATE_EXCLUDED",
    "FAILOVER_KINDS",
    "KINDS",
    "RETRY_KINDS",
    "SLO_IGNORED",
    "ErrorKind",
    "benches",
    "breaker_ignored",
    "counts_against_breaker",
    "counts_against_slo",
    "fails_over",
    "kind",
    "error_rate_excluded",
    "retries_same_backend",
    "ordered",
]


@dataclass(frozen=True)
class ErrorKind:
    """What one error kind implies.

    ``fails_over``: the router tries the next backend (``_OTHER``: only when
    ``RetryPolicy(failover_on_other=True)``). ``retries_same_backend``: a retry on the same
    backend may help (a transient fault; a rate limit once its ``Retry-After`` has passed).
    ``counts_against_breaker``: a failure the breaker
    counts. ``benches``: the backend is set aside for its ``Retry-After`` instead. ``slo``:
    the failure counts against the availability SLO (it is not the caller's own doing).
    ``error_rate_excluded``: the generic error-rate alert leaves the kind out (it has an alert
    of its own, or it is the caller's doing). ``description`` and ``sources`` are the words
    of the docs table.
    """

    name: str
    fails_over: bool
    retries_same_backend: bool
    counts_against_breaker: bool
    benches: bool
    slo: bool
    error_rate_excluded: bool
    sources: str
    description: str


_ROWS: Final = (
    ErrorKind(
        semconv.ERROR_RATE_LIMITED,
        fails_over=True,
        retries_same_backend=True,
        counts_against_breaker=False,
        benches=True,
        slo=True,
        error_rate_excluded=True,
        sources="429, provider rate-limit errors",
        description="fail over at once; the backend is benched for its Retry-After",
    ),
    ErrorKind(
        semconv.ERROR_TIMEOUT,
        fails_over=True,
        retries_same_backend=True,
        counts_against_breaker=True,
        benches=False,
        slo=True,
        error_rate_excluded=False,
        sources="read/connect timeouts, the router's own deadline",
        description="fail over; counts against the breaker",
    ),
    ErrorKind(
        semconv.ERROR_UNAVAILABLE,
        fails_over=True,
        retries_same_backend=True,
        counts_against_breaker=True,
        benches=False,
        slo=True,
        error_rate_excluded=False,
        sources='connection refused/reset, 5xx, Hugging Face 503 "model is loading"',
        description="fail over; counts against the breaker",
    ),
    ErrorKind(
        semconv.ERROR_AUTH,
        fails_over=True,
        retries_same_backend=False,
        counts_against_breaker=True,
        benches=False,
        slo=True,
        error_rate_excluded=True,
        sources="401/403",
        description="fail over; counts against the breaker; a configuration alert of its own",
    ),
    ErrorKind(
        semconv.ERROR_NOT_FOUND,
        fails_over=True,
        retries_same_backend=False,
        counts_against_breaker=True,
        benches=False,
        slo=True,
        error_rate_excluded=False,
        sources="404 model",
        description="fail over; counts against the breaker",
    ),
    ErrorKind(
        semconv.ERROR_BAD_REQUEST,
        fails_over=False,
        retries_same_backend=False,
        counts_against_breaker=False,
        benches=False,
        slo=False,
        error_rate_excluded=False,
        sources="400/422, context too long",
        description="surfaces to the caller: the request itself is wrong",
    ),
    ErrorKind(
        semconv.ERROR_CANCELLED,
        fails_over=False,
        retries_same_backend=False,
        counts_against_breaker=False,
        benches=False,
        slo=False,
        error_rate_excluded=True,
        sources="CancelledError",
        description="surfaces; a half-open trial permit is released",
    ),
    ErrorKind(
        semconv.ERROR_OTHER,
        fails_over=False,
        retries_same_backend=False,
        counts_against_breaker=True,
        benches=False,
        slo=True,
        error_rate_excluded=False,
        sources="anything else",
        description=(
            "surfaces unless RetryPolicy(failover_on_other=True); counts against the breaker"
        ),
    ),
)

#: Every error kind by name, in the order of :data:`modelwatch.semconv.ERROR_KINDS`.
KINDS: Final[Mapping[str, ErrorKind]] = MappingProxyType({row.name: row for row in _ROWS})

assert tuple(KINDS) == semconv.ERROR_KINDS, "errorkinds.KINDS and semconv.ERROR_KINDS disagree"


def kind(name: str) -> ErrorKind:
    """The row of ``name``; an unknown name is ``_OTHER``."""
    return KINDS.get(name) or KINDS[semconv.ERROR_OTHER]


def _names(predicate: str, value: bool = True) -> frozenset[str]:
    return frozenset(name for name, row in KINDS.items() if getattr(row, predicate) is value)


def fails_over(name: str) -> bool:
    """Whether the router tries the next backend after an error of this kind (``_OTHER``:
    by the router's own setting, not this table)."""
    return kind(name).fails_over


def retries_same_backend(name: str) -> bool:
    """Whether retrying the same backend may help."""
    return kind(name).retries_same_backend


def counts_against_breaker(name: str) -> bool:
    """Whether the breaker counts a failure of this kind."""
    return kind(name).counts_against_breaker


def benches(name: str) -> bool:
    """Whether an error of this kind benches the backend for its Retry-After."""
    return kind(name).benches


def counts_against_slo(name: str) -> bool:
    """Whether a failure of this kind counts against the availability SLO."""
    return kind(name).slo


def error_rate_excluded(name: str) -> bool:
    """Whether the generic error-rate alert leaves the kind out."""
    return kind(name).error_rate_excluded


#: kinds the router fails over on (``_OTHER`` aside, which the router's policy decides).
FAILOVER_KINDS: Final = _names("fails_over")
#: kinds a same-backend retry may help: :attr:`RetryPolicy.retry_kinds`' default (a
#: ``rate_limited`` backend is retried only once its ``Retry-After`` has passed).
RETRY_KINDS: Final = _names("retries_same_backend")
#: kinds the breaker does not count: :attr:`BreakerPolicy.ignore`'s default.
BREAKER_IGNORED: Final = _names("counts_against_breaker", False)
#: kinds that are not counted against the SLO: the caller's own doing.
SLO_IGNORED: Final = _names("slo", False)
#: kinds the generic error-rate alert leaves out (they alert on their own, or are the caller's).
ERROR_RATE_EXCLUDED: Final = _names("error_rate_excluded")


def breaker_ignored() -> frozenset[str]:
    """A fresh copy of :data:`BREAKER_IGNORED` (a dataclass default factory)."""
    return frozenset(BREAKER_IGNORED)


def ordered(names: frozenset[str]) -> tuple[str, ...]:
    """``names`` in the order of the table (stable rule text)."""
    return tuple(name for name in KINDS if name in names)
