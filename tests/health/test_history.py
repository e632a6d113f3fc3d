"""History: every state change kept, exact uptime ratios on a scripted clock, incidents,
the JSON-lines file store surviving a restart and staying bounded, and ``GET /history``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwatch.errors import ConfigurationError
from modelwatch.health import Health
from modelwatch.health.history import Change, History

HOUR = 3600.0


class Flip:
    """A probe whose outcome the test sets."""

    def __init__(self) -> None:
        self.ok = True

    def __call__(self) -> None:
        if not self.ok:
            raise ConnectionError("db-7.internal.example:5432 refused, token sk-live-abc123")


def _health(make_health: Any, clock: Any, **kwargs: Any) -> tuple[Health, Flip]:
    health = make_health(clock=clock, flap_threshold=1, **kwargs)
    probe = Flip()
    health.add("flan", probe, kind="model", interval_s=60.0)
    return health, probe


def test_one_hour_down_in_a_day_is_exactly_23_24(make_health: Any, clock: Any) -> None:
    health, probe = _health(make_health, clock)
    health.run_once()  # ok from t0
    clock.advance(10 * HOUR)
    probe.ok = False
    health.run_once()  # down at t0+10h
    clock.advance(HOUR)
    probe.ok = True
    health.run_once()  # ok again at t0+11h
    clock.advance(13 * HOUR)  # now t0+24h

    history = health.history()
    (check,) = history["checks"]
    assert check["uptime"]["24h"] == 23 / 24
    # 7 d and 30 d see the same 24 observed hours: unknown time counts on neither side
    assert check["uptime"]["7d"] == 23 / 24
    assert check["uptime"]["30d"] == 23 / 24
    assert [(c["previous"], c["status"]) for c in check["changes"]] == [
        ("unknown", "ok"),
        ("ok", "down"),
        ("down", "ok"),
    ]
    (incident,) = history["incidents"]
    assert incident["check"] == "flan"
    assert incident["state"] == "down"
    assert incident["duration_s"] == HOUR
    assert incident["end"] is not None
    # nothing a probe returned is in the history
    text = json.dumps(history)
    assert "sk-live" not in text
    assert "internal.example" not in text


def test_an_ongoing_incident_has_no_end_and_grows(make_health: Any, clock: Any) -> None:
    health, probe = _health(make_health, clock)
    health.run_once()
    clock.advance(HOUR)
    probe.ok = False
    health.run_once()
    clock.advance(HOUR / 2)
    (incident,) = health.history()["incidents"]
    assert incident["end"] is None
    assert incident["duration_s"] == HOUR / 2
    clock.advance(HOUR / 2)
    assert health.history()["incidents"][0]["duration_s"] == HOUR
    assert health.history()["checks"][0]["uptime"]["24h"] == 0.5


def test_degraded_counts_as_up_and_is_an_incident() -> None:
    history = History()
    t0 = 1_000_000.0
    history.record(Change(t0, "a", "model", "unknown", "ok"))
    history.record(Change(t0 + HOUR, "a", "model", "ok", "degraded", cause="redis"))
    history.record(Change(t0 + 2 * HOUR, "a", "model", "degraded", "down"))
    history.record(Change(t0 + 3 * HOUR, "a", "model", "down", "ok"))
    now = t0 + 4 * HOUR
    assert history.uptime("a", 86_400.0, now) == 3 / 4  # only the down hour is lost
    (incident,) = history.incidents("a")
    assert (incident.start, incident.end) == (t0 + HOUR, t0 + 3 * HOUR)
    assert incident.state == "down"  # the worst seen
    assert incident.cause == "redis"
    assert history.uptime("never", 86_400.0, now) is None


def test_window_limits_changes_and_incidents(make_health: Any, clock: Any) -> None:
    health, probe = _health(make_health, clock)
    health.run_once()
    probe.ok = False
    clock.advance(HOUR)
    health.run_once()
    probe.ok = True
    clock.advance(HOUR)
    health.run_once()
    clock.advance(10 * HOUR)
    recent = health.history(window_s=HOUR)
    assert recent["incidents"] == []
    assert recent["checks"][0]["changes"] == []
    assert recent["checks"][0]["uptime"]["window"] == 1.0
    assert len(health.history(window_s=12 * HOUR)["incidents"]) == 1
    with pytest.raises(ConfigurationError, match="window_s"):
        health.history(window_s=0)


def test_the_file_store_survives_a_restart(make_health: Any, clock: Any, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    health, probe = _health(make_health, clock, history_path=path)
    health.run_once()
    clock.advance(HOUR)
    probe.ok = False
    health.run_once()
    clock.advance(HOUR)
    health.stop()

    # a new process: same file, a fresh registry that has not probed yet
    again, probe2 = _health(make_health, clock, history_path=path)
    probe2.ok = True
    again.run_once()  # back up at t0+2h
    clock.advance(2 * HOUR)
    (check,) = again.history()["checks"]
    assert [c["status"] for c in check["changes"]] == ["ok", "down", "ok"]
    assert check["uptime"]["24h"] == 3 / 4
    (incident,) = again.history()["incidents"]
    assert incident["duration_s"] == HOUR


def test_the_file_store_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    history = History(path=path, per_check=10)
    t = 1_000_000.0
    for i in range(500):
        status = "down" if i % 2 else "ok"
        history.record(Change(t + i * 60, "a", "model", "x", status))
        history.record(Change(t + i * 60, "b", "model", "x", status))
    lines = path.read_text().splitlines()
    assert 20 <= len(lines) <= 2 * 10 * 2  # compacted: at most twice what the rings hold
    assert len(history.changes("a")) == 10
    # what is kept is the newest, and a reader gets the same rings back
    reread = History(path=path, per_check=10)
    assert reread.changes("a") == history.changes("a")
    assert reread.changes("a")[-1].at == t + 499 * 60


def test_compaction_drops_what_the_longest_window_no_longer_needs(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    history = History(path=path, per_check=3)
    t = 1_000_000.0
    for i in range(6):  # one change a day for 6 days, then one 40 days later
        history.record(Change(t + i * 86_400, "a", "model", "x", "ok" if i % 2 else "down"))
    history.record(Change(t + 46 * 86_400, "a", "model", "x", "down"))
    kept = [json.loads(line)["at"] for line in path.read_text().splitlines()]
    # the last change before the 30-day window stays (it says what held at its start)
    assert kept == [t + 5 * 86_400, t + 46 * 86_400]


def test_an_unreadable_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    good = Change(1.0, "a", "model", "unknown", "ok").to_dict()
    path.write_text("not json\n" + json.dumps(good) + '\n{"at": 2}\n')
    assert History(path=path).changes("a") == [Change(1.0, "a", "model", "unknown", "ok")]


@pytest.mark.parametrize("size", [1, 0, -5, 2.5, "100", True, None])
def test_history_size_is_validated_naming_the_argument(size: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"Health\(history_size=\.\.\.\): must be an int"):
        Health(history_size=size)


def test_a_bad_history_path_is_refused_at_construction(tmp_path: Path) -> None:
    for path, reason in (
        (tmp_path, "is a directory"),
        (tmp_path / "missing" / "history.jsonl", "does not exist"),
        (42, "must be a file path"),
        ("", "must be a file path"),
    ):
        with pytest.raises(ConfigurationError, match=r"Health\(history_path=\.\.\.\): ") as err:
            Health(history_path=path)  # type: ignore[arg-type]
        assert reason in str(err.value)
    ok = tmp_path / "history.jsonl"
    Health(history_path=ok).stop()  # a new file in an existing directory is fine


def test_a_bad_window_is_refused_naming_it(make_health: Any, clock: Any) -> None:
    health, _ = _health(make_health, clock)
    for window in (0, -1.0, float("nan"), float("inf"), "3600", 31 * 86_400):
        with pytest.raises(ConfigurationError, match=r"history\(window_s=\.\.\.\)"):
            health.history(window_s=window)
    assert health.history(window_s=30 * 86_400)["window_s"] == 30 * 86_400


def _down_for_the_last_hour_of_two(make_health: Any, clock: Any) -> Any:
    health, probe = _health(make_health, clock)
    health.run_once()
    probe.ok = False
    clock.advance(HOUR)
    health.run_once()
    clock.advance(HOUR)
    return health


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_get_history_takes_a_validated_window(
    make_health: Any, clock: Any, serve_asgi: Any, serve_wsgi: Any, server: str
) -> None:
    health = _down_for_the_last_hour_of_two(make_health, clock)
    serve = serve_asgi if server == "asgi" else serve_wsgi
    app = health.asgi() if server == "asgi" else health.wsgi()
    with serve(app) as url, httpx.Client(base_url=url) as client:
        got = client.get("/history", params={"window_s": "1800"})
        whole = client.get("/history")
        bad = {
            query: client.get(f"/history?{query}")
            for query in (
                "window_s=abc",
                "window_s=0",
                "window_s=-60",
                "window_s=nan",
                "window_s=inf",
                "window_s=",
                "window_s=2592001",
                "window_s=60&window_s=120",
                "window=3600",
                "window_s",
            )
        }
    assert got.status_code == 200
    body = got.json()
    assert body["window_s"] == 1800.0
    assert body["checks"][0]["uptime"]["window"] == 0.0  # the last 30 min: all down
    assert body["checks"][0]["uptime"]["24h"] == 0.5
    assert whole.json()["window_s"] is None
    for query, response in bad.items():
        assert response.status_code == 400, query
        assert response.headers["content-type"] == "application/json"
        error = response.json()
        assert error.get("parameter") == "window_s" or error["parameters"] == ["window"], query


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_get_history_on_both_apps_with_the_same_auth(
    make_health: Any, clock: Any, serve_asgi: Any, serve_wsgi: Any, server: str
) -> None:
    health = _down_for_the_last_hour_of_two(make_health, clock)
    serve = serve_asgi if server == "asgi" else serve_wsgi
    app = health.asgi(token="s3cret") if server == "asgi" else health.wsgi(token="s3cret")
    with serve(app) as url, httpx.Client(base_url=url) as client:
        assert client.get("/history").status_code == 401
        got = client.get("/history", headers={"Authorization": "Bearer s3cret"})
    assert got.status_code == 200
    body = got.json()
    assert body["checks"][0]["uptime"]["24h"] == 0.5
    assert body["incidents"][0]["end"] is None
    assert "sk-live" not in got.text
