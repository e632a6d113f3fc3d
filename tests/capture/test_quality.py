"""Quality scores and labelled outcomes: exact counts under threads, bounded, validated."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

import modelwatch
from modelwatch import semconv
from modelwatch.capture import quality
from modelwatch.capture.quality import confusion
from modelwatch.testing import capture

SCORE = semconv.QUALITY_SCORE.name
OUTCOMES = semconv.QUALITY_OUTCOMES.name


def _threads(n: int, work: Callable[[int], None]) -> None:
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_scores_are_counted_exactly_under_64_threads() -> None:
    with capture() as cap:

        def work(i: int) -> None:
            for j in range(50):
                modelwatch.record_quality(
                    0.25 if j % 2 else 0.75, model="m", analysis="code_review", metric="rating"
                )
                with modelwatch.monitored(model="m", provider="p", analysis="code_review") as call:
                    call.record_quality(1.0, metric="relevance")

        _threads(64, work)
        rating = {semconv.QUALITY_METRIC: "rating", semconv.MODELWATCH_ANALYSIS: "code_review"}
        assert cap.metric_count(SCORE, rating) == 64 * 50
        assert cap.metric_sum(SCORE, rating) == pytest.approx(64 * 25 * (0.25 + 0.75))
        assert cap.metric_count(SCORE, {semconv.QUALITY_METRIC: "relevance"}) == 64 * 50
        (point,) = cap.metric_points(SCORE, rating)
        assert point.bounds == semconv.QUALITY_BUCKETS


def test_outcomes_are_counted_per_label_exactly_under_64_threads() -> None:
    labels = ("bug", "no_bug")
    with capture() as cap:

        def work(i: int) -> None:
            for _ in range(25):
                kw = {"model": "clf", "analysis": "code_review", "labels": labels}
                modelwatch.record_outcome(predicted="bug", actual="bug", **kw)  # type: ignore[arg-type]
                modelwatch.record_outcome(predicted="bug", actual="no_bug", **kw)  # type: ignore[arg-type]
                modelwatch.record_outcome(predicted="no_bug", actual="bug", **kw)  # type: ignore[arg-type]

        _threads(64, work)
        n = 64 * 25

        def count(label: str, outcome: str) -> float:
            return cap.metric_sum(OUTCOMES, {semconv.LABEL: label, semconv.OUTCOME: outcome})

        assert (count("bug", "tp"), count("bug", "fp"), count("bug", "fn")) == (n, n, n)
        assert count("bug", "tn") == 0
        assert (count("no_bug", "tn"), count("no_bug", "fn"), count("no_bug", "fp")) == (n, n, n)
        # precision and recall of "bug" as the recording rules compute them
        tp, fp, fn = count("bug", "tp"), count("bug", "fp"), count("bug", "fn")
        assert tp / (tp + fp) == pytest.approx(0.5)
        assert tp / (tp + fn) == pytest.approx(0.5)


def test_confusion_cells_single_multi_label_and_unknown_values() -> None:
    labels = ("a", "b", "c")
    f = frozenset
    assert confusion(f("a"), f("a"), labels) == [("a", "tp"), ("b", "tn"), ("c", "tn")]
    assert confusion(f("a"), f("b"), labels) == [("a", "fp"), ("b", "fn"), ("c", "tn")]
    assert confusion(f({"a", "b"}), f({"b", "c"}), labels) == [
        ("a", "fp"),
        ("b", "tp"),
        ("c", "fn"),
    ]
    # free text outside the declared labels never becomes a label
    assert confusion(f({"free text"}), f("a"), labels)[-1] == (semconv.LABEL_OTHER, "fp")


def _outcome(**kw: object) -> Callable[[], None]:
    args: dict[str, object] = {"model": "m", "predicted": "a", "actual": "a", "labels": ("a",)}
    args.update(kw)
    return lambda: modelwatch.record_outcome(**args)  # type: ignore[arg-type]


def _quality(score: object, **kw: object) -> Callable[[], None]:
    args: dict[str, object] = {"model": "m"}
    args.update(kw)
    return lambda: modelwatch.record_quality(score, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (_quality(1.5), "score"),
        (_quality(float("nan")), "score"),
        (_quality(True), "score"),
        (_quality(0.5, model=""), "model"),
        (_quality(0.5, metric=""), "metric"),
        (_outcome(labels="a"), "labels"),
        (_outcome(labels=()), "labels"),
        (_outcome(labels=("a", "a")), "labels"),
        (_outcome(labels=tuple(str(i) for i in range(33))), "labels"),
        (_outcome(predicted=1), "predicted"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(
    call: Callable[[], None], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        call()


def test_call_record_quality_rejects_bad_scores_but_keeps_the_call() -> None:
    with capture() as cap:
        with modelwatch.monitored(model="m", provider="p") as call:
            with pytest.raises(ValueError, match="score"):
                call.record_quality(-0.1)
        assert cap.metric_count(SCORE) == 0
        assert cap.span("chat m") is not None


def test_series_are_bounded_with_one_overflow_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quality, "_score_keys", quality.BoundedKeys("test", 3))
    monkeypatch.setattr(quality, "_label_keys", quality.BoundedKeys("test", 2))
    with capture() as cap:
        for i in range(10):
            modelwatch.record_quality(0.5, model=f"m{i}")
            modelwatch.record_outcome(model=f"m{i}", predicted="a", actual="a", labels=("a",))
        models = {p.attributes.get(semconv.GEN_AI_REQUEST_MODEL) for p in cap.metric_points(SCORE)}
        assert models == {"m0", "m1", "m2", None}
        overflow = {semconv.OTEL_METRIC_OVERFLOW: True}
        assert cap.metric_count(SCORE, overflow) == 7
        assert cap.metric_sum(OUTCOMES, overflow) == 8
        assert cap.metric_sum(OUTCOMES) == 10


def test_listener_failure_never_reaches_the_caller() -> None:
    seen: list[tuple[float, str]] = []

    def broken(*_: object) -> None:
        raise RuntimeError("listener bug")

    def good(score: float, metric: str, *_: object) -> None:
        seen.append((score, metric))

    quality.add_quality_listener(broken)
    quality.add_quality_listener(good)
    try:
        modelwatch.record_quality(0.3, model="m", metric="x")
    finally:
        quality._listeners.remove(broken)
        quality._listeners.remove(good)
    assert seen == [(0.3, "x")]
