"""Cost accounting from a price table shipped in the package (never fetched).

A price is any of ``input_per_1k``, ``output_per_1k`` (USD per 1,000 tokens) and
``per_request`` (USD per call). :func:`set_prices` (what ``configure(prices=...)`` calls) extends
and overrides the shipped table. Lookup is by exact model name, then without a ``provider/``
prefix, then by the longest known name the model starts with (``gpt-4o-2024-08-06`` -> ``gpt-4o``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Final

PRICE_KEYS: Final = frozenset({"input_per_1k", "output_per_1k", "per_request"})


@dataclass(frozen=True, slots=True)
class Price:
    """USD prices of one model."""

    input_per_1k: float = 0.0
    output_per_1k: float = 0.0
    per_request: float = 0.0

    def cost(self, input_tokens: int | None, output_tokens: int | None) -> float:
        """The cost of one call with this many tokens (unknown counts cost nothing)."""
        return (
            self.per_request
            + (input_tokens or 0) * self.input_per_1k / 1000.0
            + (output_tokens or 0) * self.output_per_1k / 1000.0
        )


def parse_prices(prices: object, *, setting: str = "prices") -> dict[str, Price]:
    """Validate a ``{model: {key: usd}}`` mapping; raise ``ValueError`` naming what is wrong."""
    if not isinstance(prices, Mapping):
        raise ValueError(
            f"{setting} must be a mapping of model name to prices, got {type(prices).__name__}"
        )
    parsed: dict[str, Price] = {}
    for model, entry in prices.items():
        if not isinstance(model, str) or not model:
            raise ValueError(f"{setting}: model names must be non-empty strings, got {model!r}")
        if not isinstance(entry, Mapping) or not entry:
            raise ValueError(
                f"{setting}[{model!r}] must be a mapping with any of "
                f"{sorted(PRICE_KEYS)}, got {entry!r}"
            )
        unknown = set(entry) - PRICE_KEYS
        if unknown:
            raise ValueError(
                f"{setting}[{model!r}] has unknown key(s) {sorted(unknown)}; "
                f"accepted: {sorted(PRICE_KEYS)}"
            )
        values: dict[str, float] = {}
        for key, value in entry.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(
                    f"{setting}[{model!r}][{key!r}] must be a number >= 0 (USD), got {value!r}"
                )
            values[key] = float(value)
        parsed[model] = Price(**values)
    return parsed


def _load_shipped() -> dict[str, Price]:
    text = resources.files("modelwatch.capture").joinpath("prices.json").read_text("utf-8")
    raw = {k: v for k, v in json.loads(text).items() if not k.startswith("_")}
    return parse_prices(raw, setting="shipped price table")


class PriceTable:
    """The shipped prices plus the user's overrides, with a lookup cache."""

    def __init__(self) -> None:
        self._shipped = _load_shipped()
        self._table: dict[str, Price] = dict(self._shipped)
        self._cache: dict[str, Price | None] = {}
        self._lock = threading.Lock()

    def set_overrides(self, overrides: Mapping[str, Price]) -> None:
        """Replace the user's overrides (the shipped table stays underneath)."""
        with self._lock:
            self._table = {**self._shipped, **overrides}
            self._cache = {}

    def lookup(self, model: str) -> Price | None:
        """The price of ``model``, or ``None`` when the table does not know it."""
        try:
            return self._cache[model]
        except KeyError:
            pass
        table = self._table
        found = table.get(model)
        if found is None and "/" in model:
            found = table.get(model.rsplit("/", 1)[1])
        if found is None:
            candidates = [name for name in table if model.startswith(name)]
            if candidates:
                found = table[max(candidates, key=len)]
        self._cache[model] = found
        return found


prices = PriceTable()


def set_prices(overrides: Mapping[str, Price]) -> None:
    """Extend and override the shipped table (``configure(prices=...)``)."""
    prices.set_overrides(overrides)


def cost_of(model: str, input_tokens: int | None, output_tokens: int | None) -> float | None:
    """USD cost of one call of ``model``, or ``None`` when its price is unknown."""
    price = prices.lookup(model)
    if price is None:
        return None
    return price.cost(input_tokens, output_tokens)
