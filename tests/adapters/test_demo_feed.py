"""DemoFeed: packaged documents moved to today (relative to 01.01.2030), missing files, blocking work off-thread.

Most tests use a temporary demo root and a synchronous runner (threadless, Clock-driven); one uses the
reactor's thread pool, and one reads the real packaged demo files when they exist.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock

from tenantsvc.adapters.demo_feed import (
    EMPTY_RESULTS, DemoFeed, packaged_demo_root, shift_demo_dates, shift_feed_date, thread_runner,
)
from tenantsvc.core.feed_errors import FeedHttpError, FeedMalformed
from tenantsvc.core.odds import SPORTS

# 2031-03-15 12:00 UTC: 438 days after the demo files' "today" (01.01.2030).
NOW = datetime(2031, 3, 15, 12, 0, tzinfo=timezone.utc).timestamp()
DAYS = (date(2031, 3, 15) - date(2030, 1, 1)).days

ODDS = {"scores": {"sport": "soccer", "ts": "1", "categories": [{"name": "01.01.2030 Cup", "matches": [
    {"id": "1", "date": "Jan 01", "formatted_date": "01.01.2030", "time": "18:00",
     "odds": [{"id": "1", "bookmakers": [{"ts": "31.12.2029"}]}]},
    {"id": "2", "date": "02.01.2030", "formatted_date": "31.12.2029", "time": "20:00"},
]}]}}
RESULTS = {"scores": {"category": {"@name": "Premier League", "matches": {"match": [
    {"@id": "1", "@status": "FT", "@formatted_date": "31.12.2029", "@date": "Dec 31"},
    {"@id": "2", "@status": "Postp.", "@formatted_date": "01.01.2030", "@date": "01.01.2030"},
]}}}}


def run_inline(fn: Any, *args: Any) -> Deferred:
    """A BlockingRunner that runs the work at once on the calling thread (tests only)."""
    return maybeDeferred(fn, *args)


def _clock_at(timestamp: float) -> Clock:
    clock = Clock()
    clock.advance(timestamp)
    return clock


@pytest.fixture
def demo_root(tmp_path: Path) -> Path:
    """A demo directory with soccer odds and one soccer results page (under ``soccernew``)."""
    (tmp_path / "odds").mkdir()
    (tmp_path / "odds" / "soccer.json").write_text(json.dumps(ODDS))
    (tmp_path / "results" / "soccernew").mkdir(parents=True)
    (tmp_path / "results" / "soccernew" / "d-1.json").write_text(json.dumps(RESULTS))
    return tmp_path


def _loaded(deferred: Deferred) -> Any:
    """The JSON document a synchronous fetch produced."""
    return json.loads(deferred.result)


# -- date shifting (pure) ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "days", "expected"), [
    ("01.01.2030", 0, "01.01.2030"),
    ("01.01.2030", 438, "15.03.2031"),
    ("31.12.2029", 1, "01.01.2030"),
    ("28.02.2032", 1, "29.02.2032"),
    ("01.01.2030", -1, "31.12.2029"),
    ("Sep 11", 5, "Sep 11"),
    ("31.02.2030", 5, "31.02.2030"),
    ("1.1.2030", 5, "1.1.2030"),
    ("18:00", 5, "18:00"),
])
def test_shift_feed_date_moves_only_dd_mm_yyyy_dates(text, days, expected):
    assert shift_feed_date(text, days) == expected


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2900, 1, 1)), st.integers(-3000, 3000))
def test_shifting_there_and_back_is_the_identity(day, days):
    text = day.strftime("%d.%m.%Y")
    assert shift_feed_date(shift_feed_date(text, days), -days) == text
    assert shift_feed_date(text, days) == (day + timedelta(days=days)).strftime("%d.%m.%Y")


def test_only_date_keys_are_shifted_at_any_depth():
    shifted = shift_demo_dates(ODDS, 1)
    [first, second] = shifted["scores"]["categories"][0]["matches"]
    assert (first["formatted_date"], first["date"], first["time"]) == ("02.01.2030", "Jan 01", "18:00")
    assert (second["formatted_date"], second["date"]) == ("01.01.2030", "03.01.2030")
    assert shifted["scores"]["categories"][0]["name"] == "01.01.2030 Cup", "only date keys move"
    assert first["odds"][0]["bookmakers"][0]["ts"] == "31.12.2029"
    assert ODDS["scores"]["categories"][0]["matches"][0]["formatted_date"] == "01.01.2030", "input untouched"


# -- DemoFeed ---------------------------------------------------------------------------------------------

def test_odds_are_moved_to_today_and_stamped_now(demo_root: Path):
    feed = DemoFeed(_clock_at(NOW), run_inline, root=demo_root)
    document = _loaded(feed.fetch_odds("soccer"))
    [first, second] = document["scores"]["categories"][0]["matches"]
    assert first["formatted_date"] == "15.03.2031", "01.01.2030 means today"
    assert second["formatted_date"] == "14.03.2031" and second["date"] == "16.03.2031"
    assert first["date"] == "Jan 01"
    assert document["scores"]["ts"] == str(int(NOW))


def test_results_at_keys_are_moved_too_and_read_from_the_results_feed_path(demo_root: Path):
    feed = DemoFeed(_clock_at(NOW), run_inline, root=demo_root)
    matches = _loaded(feed.fetch_results("soccer", "d-1"))["scores"]["category"]["matches"]["match"]
    assert [m["@formatted_date"] for m in matches] == ["14.03.2031", "15.03.2031"]
    assert [m["@date"] for m in matches] == ["Dec 31", "15.03.2031"]


def test_missing_odds_are_a_404_not_an_empty_document(demo_root: Path):
    fetched = DemoFeed(_clock_at(NOW), run_inline, root=demo_root).fetch_odds("darts")
    error = fetched.result.value
    fetched.addErrback(lambda _: None)
    assert isinstance(error, FeedHttpError) and error.status == 404


def test_a_missing_results_page_is_an_empty_results_document(demo_root: Path):
    feed = DemoFeed(_clock_at(NOW), run_inline, root=demo_root)
    assert feed.fetch_results("soccer", "d-7").result == EMPTY_RESULTS
    assert feed.fetch_results("basketball", "home").result == EMPTY_RESULTS


def test_a_basketball_results_page_lives_under_bsktbl(demo_root: Path):
    (demo_root / "results" / "bsktbl").mkdir()
    (demo_root / "results" / "bsktbl" / "home.json").write_text('{"scores": {"category": []}}')
    feed = DemoFeed(_clock_at(NOW), run_inline, root=demo_root)
    assert _loaded(feed.fetch_results("basketball", "home")) == {"scores": {"category": [], "ts": str(int(NOW))}}


def test_a_broken_demo_file_is_malformed(demo_root: Path):
    (demo_root / "odds" / "tennis.json").write_text("{not json")
    fetched = DemoFeed(_clock_at(NOW), run_inline, root=demo_root).fetch_odds("tennis")
    assert isinstance(fetched.result.value, FeedMalformed)
    fetched.addErrback(lambda _: None)


def test_unknown_sports_and_pages_are_refused_before_reading(demo_root: Path):
    feed = DemoFeed(_clock_at(NOW), run_inline, root=demo_root)
    with pytest.raises(ValueError):
        feed.fetch_odds("../odds/soccer")
    with pytest.raises(ValueError):
        feed.fetch_results("soccer", "../../odds/soccer")


@pytest_twisted.ensureDeferred
async def test_files_are_read_in_the_reactor_thread_pool(demo_root: Path):
    import threading

    from twisted.internet import reactor

    threads: list[threading.Thread] = []
    pool_runner = thread_runner(reactor, reactor.getThreadPool())

    def recording_runner(fn: Any, *args: Any) -> Deferred:
        def in_thread(*thread_args: Any) -> Any:
            threads.append(threading.current_thread())
            return fn(*thread_args)

        return pool_runner(in_thread, *args)

    feed = DemoFeed(_clock_at(NOW), recording_runner, root=demo_root)
    document = json.loads(await feed.fetch_odds("soccer"))
    assert document["scores"]["ts"] == str(int(NOW))
    assert len(threads) == 1 and threads[0] is not threading.main_thread()


def test_the_packaged_demo_files_load_when_present():
    odds_dir = packaged_demo_root().joinpath("odds")
    present = [sport for sport in SPORTS if odds_dir.joinpath(f"{sport}.json").is_file()]
    if not present:
        pytest.skip("no packaged demo odds yet")
    feed = DemoFeed(_clock_at(NOW), run_inline)
    for sport in present:
        document = _loaded(feed.fetch_odds(sport))
        assert document["scores"]["ts"] == str(int(NOW))
    for sport in SPORTS:
        assert "scores" in _loaded(feed.fetch_results(sport, "home"))
