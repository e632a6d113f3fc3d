"""The small YAML writer behind the generated files: whatever it writes, YAML reads back."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from modelwatch.ops import _yaml

_keys = st.text(min_size=1, max_size=12)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
_documents = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_keys, _documents, min_size=1, max_size=5))
def test_any_document_round_trips(document: dict[str, Any]) -> None:
    assert yaml.safe_load(_yaml.dump(document)) == document


def test_awkward_values_round_trip() -> None:
    document = {
        "a": ["yes", "no", "5m", "1.5", "", " lead", "x: y", "#c", "multi\nline", "end\n"],
        "b": {"nested": [], "empty": {}, "n": None, "t": True, "f": 1.25, "i": 3},
        "c": [[1, 2], {"k": "v", "l": [{"m": 1}]}, [], {}],
        "promql": 'sum by (job) (rate(x{a="b", c!~"d|e"}[5m])) > 0.05',
    }
    assert yaml.safe_load(_yaml.dump(document, header="h")) == document


def test_promql_and_matchers_stay_legible() -> None:
    text = _yaml.dump({"expr": 'x{a="b"} > 1', "for": "5m", "multi": "a\nb"})
    assert "expr: 'x{a=\"b\"} > 1'" in text
    assert "for: 5m" in text
    assert "multi: |-\n  a\n  b" in text


def test_infinities_and_nan_are_written_as_yaml_reads_them() -> None:
    text = _yaml.dump({"up": float("inf"), "down": float("-inf"), "nan": float("nan")})
    assert "up: .inf\ndown: -.inf\nnan: .nan" in text
    back = yaml.safe_load(text)
    assert back["up"] == float("inf")
    assert back["down"] == float("-inf")
    assert back["nan"] != back["nan"]  # a float NaN, not the string "nan"
