"""Input and output drift: :class:`Drift` compares a recent window with a reference (PSI, KS).

>>> import modelwatch
>>> drift = modelwatch.Drift("review-inputs", features={"input_tokens": "numeric",
...                          "language": "categorical"}, window=200)
>>> for i in range(400):
...     drift.observe(input_tokens=100 + i % 50, language="python")
>>> drift.score()["language"]
0.0
>>> drift.close()

The reference is given (``reference={"input_tokens": [...], ...}``) or learned from the first
``reference_size`` observations of each feature (default: ``window``). The recent window
slides over the last ``window`` observations. :meth:`Drift.score` is the population
stability index per feature: numeric features are binned at the reference's deciles,
categorical ones per reference category (at most :data:`MAX_CATEGORIES`, the rest and unseen
values in one ``_OTHER`` bin); ``PSI = sum((a - e) * ln(a / e))`` with empty bins floored at
:data:`EPSILON`. Rule of thumb: < 0.1 stable, 0.1-0.2 moderate, > 0.2 drift (the default
``threshold``). :meth:`Drift.ks` adds the two-sample Kolmogorov-Smirnov statistic and p-value
of numeric features through ``scipy.stats.ks_2samp`` when scipy is installed
(``pip install modelwatch[drift]``).

With ``model=``, the features ``input_tokens``, ``output_tokens`` and ``latency_s`` are fed
by that model's monitored calls automatically (successful users' calls); other features
come from :meth:`Drift.observe`. ``modelwatch.drift.score`` exports every open monitor's
PSI per feature.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

from modelwatch import semconv
from modelwatch.capture import baseline
from modelwatch.capture._telemetry import Attributes, register_observable
from modelwatch.errors import ConfigurationError

__all__ = ["AUTO_FEATURES", "Drift", "FeatureKind", "psi"]

FeatureKind = Literal["numeric", "categorical"]
#: features a ``Drift(model=...)`` gets from that model's monitored calls
AUTO_FEATURES: Final = ("input_tokens", "output_tokens", "latency_s")
MAX_FEATURES: Final = 64
MAX_CATEGORIES: Final = 50
BINS: Final = 10
EPSILON: Final = 1e-4
#: features are scored once their window is full (at least this many observations)
MIN_WINDOW: Final = 10
OTHER: Final = semconv.LABEL_OTHER

_open: list[Drift] = []
_lock = threading.Lock()


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two distributions over the same bins (shares)."""
    total = 0.0
    for raw_e, raw_a in zip(expected, actual, strict=True):
        e, a = max(raw_e, EPSILON), max(raw_a, EPSILON)
        total += (a - e) * math.log(a / e)
    return total


class _Feature:
    __slots__ = ("categories", "edges", "kind", "reference", "reference_size", "window")

    def __init__(self, kind: FeatureKind, window: int, reference_size: int) -> None:
        self.kind = kind
        self.window: deque[Any] = deque(maxlen=window)
        self.reference: list[Any] = []
        self.reference_size = reference_size
        self.edges: list[float] | None = None  # numeric: inner bin edges
        self.categories: list[str] | None = None

    @property
    def ready(self) -> bool:
        return self.edges is not None or self.categories is not None

    def freeze(self) -> None:
        ref = self.reference
        if self.kind == "numeric":
            values = sorted(float(v) for v in ref)
            edges = {values[min(len(values) - 1, len(values) * i // BINS)] for i in range(1, BINS)}
            self.edges = sorted(edges)
        else:
            common = Counter(str(v) for v in ref).most_common(MAX_CATEGORIES)
            self.categories = [c for c, _ in common]

    def add(self, value: Any) -> None:
        if not self.ready:
            self.reference.append(value)
            if len(self.reference) >= self.reference_size:
                self.freeze()
            return
        self.window.append(value)

    def shares(self, values: Iterable[Any]) -> list[float]:
        if self.edges is not None:
            counts = [0] * (len(self.edges) + 1)
            for v in values:
                counts[bisect.bisect_right(self.edges, float(v))] += 1
        else:
            assert self.categories is not None
            index = {c: i for i, c in enumerate(self.categories)}
            counts = [0] * (len(self.categories) + 1)  # the last bin: _OTHER
            for v in values:
                counts[index.get(str(v), len(self.categories))] += 1
        n = sum(counts) or 1
        return [c / n for c in counts]

    def score(self) -> float | None:
        if not self.ready or len(self.window) < (self.window.maxlen or MIN_WINDOW):
            return None  # a part-filled window's PSI is biased up (small-sample noise)
        return psi(self.shares(self.reference), self.shares(list(self.window)))


class Drift:
    """A drift monitor over named numeric and categorical features (see the module doc).

    Args:
        name: names the monitor (``modelwatch.drift`` on the gauge); unique among open ones.
        model: the model whose monitored calls feed ``input_tokens``, ``output_tokens`` and
            ``latency_s`` automatically (and labels the gauge).
        features: ``{name: "numeric" | "categorical"}``.
        reference: per feature, the reference sample; features without one learn it.
        window: the size of the sliding window of recent observations.
        reference_size: observations learned as the reference (default ``window``).
        threshold: the PSI above which :meth:`drifted` says a feature drifted.
    """

    def __init__(
        self,
        name: str,
        *,
        features: Mapping[str, FeatureKind],
        model: str | None = None,
        reference: Mapping[str, Sequence[Any]] | None = None,
        window: int = 1000,
        reference_size: int | None = None,
        threshold: float = 0.2,
    ) -> None:
        _validate(name, features, model, window, reference_size, threshold)
        size = reference_size if reference_size is not None else window
        self.name = name
        self.model = model
        self.window = window
        self.threshold = threshold
        self._features = {f: _Feature(k, window, size) for f, k in features.items()}
        for feature, sample in (reference or {}).items():
            if feature not in self._features:
                raise ConfigurationError(f"Drift reference names an unknown feature {feature!r}")
            if not sample:
                raise ConfigurationError(f"Drift reference for {feature!r} is empty")
            f = self._features[feature]
            f.reference = list(sample)
            f.freeze()
        self._lock = threading.Lock()
        self._auto = [f for f in AUTO_FEATURES if f in self._features] if model else []
        if self._auto:
            baseline.ensure_listening()
        with _lock:
            if any(d.name == name for d in _open):
                raise ConfigurationError(f"Drift(): a monitor named {name!r} is already open")
            _open.append(self)

    def observe(self, **values: Any) -> None:
        """Add one observation (any subset of the features; unknown names raise ValueError)."""
        unknown = set(values) - set(self._features)
        if unknown:
            raise ValueError(f"Drift {self.name!r}: unknown features {sorted(unknown)}")
        with self._lock:
            for feature, value in values.items():
                if value is not None:
                    self._features[feature].add(value)

    def score(self) -> dict[str, float]:
        """PSI per feature whose reference is known and whose window has data."""
        if self._auto:
            baseline.drain()
        with self._lock:
            scores = {name: f.score() for name, f in self._features.items()}
        return {name: round(s, 6) for name, s in scores.items() if s is not None}

    def drifted(self) -> dict[str, bool]:
        """Per scored feature: is its PSI above ``threshold``?"""
        return {name: s > self.threshold for name, s in self.score().items()}

    def ks(self) -> dict[str, tuple[float, float]]:
        """``{feature: (statistic, p-value)}`` of the two-sample KS test for numeric features
        (needs scipy: ``pip install modelwatch[drift]``; raises ImportError without it)."""
        from scipy.stats import ks_2samp

        out = {}
        with self._lock:
            pairs = [
                (n, list(f.reference), list(f.window))
                for n, f in self._features.items()
                if f.kind == "numeric" and f.ready and f.window
            ]
        for name, ref, recent in pairs:
            result = ks_2samp(ref, recent)
            out[name] = (float(result.statistic), float(result.pvalue))
        return out

    def _feed(self, batch: Sequence[baseline.CallEnd]) -> None:
        model, auto = self.model, self._auto
        with self._lock:
            for m, _analysis, kind, duration, tokens_in, tokens_out, _at in batch:
                if m != model or kind is not None:
                    continue
                for feature in auto:
                    value = {"input_tokens": tokens_in, "output_tokens": tokens_out}.get(
                        feature, duration
                    )
                    if value is not None:
                        self._features[feature].add(value)

    def close(self) -> None:
        """Stop monitoring and reporting (idempotent)."""
        with _lock:
            if self in _open:
                _open.remove(self)

    def __enter__(self) -> Drift:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Drift({self.name!r}, features={sorted(self._features)})"


def _validate(  # noqa: PLR0917 - the constructor's arguments, checked in one place
    name: object,
    features: object,
    model: object,
    window: object,
    reference_size: object,
    threshold: object,
) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"Drift name must be a non-empty str, got {name!r}")
    if not isinstance(features, Mapping) or not features or len(features) > MAX_FEATURES:
        raise ConfigurationError(
            f"Drift features must map 1..{MAX_FEATURES} names to kinds, got {features!r}"
        )
    for feature, kind in features.items():
        if not isinstance(feature, str) or kind not in ("numeric", "categorical"):
            raise ConfigurationError(
                f"Drift features: {feature!r} must be 'numeric' or 'categorical', got {kind!r}"
            )
    if model is not None and (not isinstance(model, str) or not model):
        raise ConfigurationError(f"Drift model must be a non-empty str or None, got {model!r}")
    for arg, value in (("window", window), ("reference_size", reference_size)):
        if value is None and arg == "reference_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 10:
            raise ConfigurationError(f"Drift {arg} must be an int >= 10, got {value!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold <= 0:
        raise ConfigurationError(f"Drift threshold must be a number > 0, got {threshold!r}")


def _feed_all(batch: Sequence[baseline.CallEnd]) -> None:
    for drift in list(_open):
        if drift._auto:
            drift._feed(batch)


baseline._consumers.append(_feed_all)


def _observe() -> Iterable[tuple[float, Attributes]]:
    for drift in list(_open):
        for feature, value in drift.score().items():
            attrs: dict[str, Any] = {semconv.DRIFT: drift.name, semconv.FEATURE: feature}
            if drift.model is not None:
                attrs[semconv.GEN_AI_REQUEST_MODEL] = drift.model
            yield value, attrs


register_observable(semconv.DRIFT_SCORE, _observe)
