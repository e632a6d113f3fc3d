"""errorkinds.KINDS is the one table of error kinds: docs/router.md's table and every
default that decides what a kind means are pinned to it."""

from __future__ import annotations

import re
from pathlib import Path

from modelwatch import errorkinds, semconv
from modelwatch.resilience.policy import BreakerPolicy, RetryPolicy

ROUTER_DOC = Path(__file__).parents[1] / "docs" / "router.md"


def doc_rows() -> dict[str, tuple[str, str, str]]:
    """``kind -> (source, router, breaker)`` from the error-kind table of docs/router.md."""
    rows: dict[str, tuple[str, str, str]] = {}
    for line in ROUTER_DOC.read_text().splitlines():
        match = re.match(r"\| `([a-zA-Z_]+)` \| (.*) \| (.*) \| (.*) \|$", line)
        if match and match.group(1) in (*semconv.ERROR_KINDS, "_OTHER"):
            rows[match.group(1)] = (match.group(2), match.group(3), match.group(4))
    return rows


def test_the_docs_table_lists_every_kind_in_table_order() -> None:
    assert list(doc_rows()) == list(errorkinds.KINDS)


def test_the_docs_table_says_what_the_table_says() -> None:
    for name, (_source, router, breaker) in doc_rows().items():
        row = errorkinds.KINDS[name]
        assert (breaker == "counted") is row.counts_against_breaker, name
        assert (breaker == "not counted") is not row.counts_against_breaker, name
        assert router.startswith("fail over") is row.fails_over, name
        assert ("benched" in router) is row.benches, name
        if "never retried on the same backend" in router:
            assert not row.retries_same_backend, name


def test_policy_defaults_come_from_the_table() -> None:
    assert BreakerPolicy().ignore == errorkinds.BREAKER_IGNORED
    assert RetryPolicy().retry_kinds == errorkinds.RETRY_KINDS
    assert {
        semconv.ERROR_BAD_REQUEST,
        semconv.ERROR_CANCELLED,
        semconv.ERROR_RATE_LIMITED,
    } == errorkinds.BREAKER_IGNORED
