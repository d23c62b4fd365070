"""GoalserveClient: URL shape, gzip, errors mapped to FeedErrors, timeouts, and the API key never leaking.

Request building, Retry-After parsing and the timeout are unit-tested with a ``Clock`` (and a stub agent);
everything else runs over real loopback TCP against ``tests.support.fake_goalserve``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import formatdate
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import DNSLookupError
from twisted.internet.task import Clock

from tenantsvc.adapters.demo_feed import DemoFeed
from tenantsvc.adapters.goalserve import (
    FEED_FETCH, FeedSource, GoalserveClient, odds_request, parse_retry_after, results_request,
)
from tenantsvc.core.feed_errors import FeedHttpError, FeedMalformed, FeedTimeout, FeedUnreachable
from tenantsvc.core.odds import SPORTS
from tests.support.fake_goalserve import EMPTY_RESULTS, RunningFakeGoalserve
from tests.support.fake_goalserve import fake_goalserve  # noqa: F401 - a fixture
from tests.support.logs import eliot_messages  # noqa: F401 - a fixture

SECRET = "stub-secret-key-7c9b"
# 2030-03-01 00:30:00 UTC: yesterday is in February, so the window crosses a month boundary.
MARCH_FIRST_2030 = datetime(2030, 3, 1, 0, 30, tzinfo=timezone.utc).timestamp()
ODDS_DOCUMENT = json.dumps({"scores": {"sport": "soccer", "ts": "1", "categories": [
    {"name": f"League {n}", "matches": [{"id": str(n), "formatted_date": "01.03.2030"}]} for n in range(200)
]}}).encode()


def _clock_at(timestamp: float) -> Clock:
    clock = Clock()
    clock.advance(timestamp)
    return clock


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _assert_key_absent(key: str, *texts: object, messages: list[dict] = ()) -> None:
    for text in texts:
        assert key not in str(text) and key not in repr(text)
    assert key not in json.dumps(list(messages), default=repr)


async def _failure_of(deferred: Deferred) -> BaseException:
    try:
        await deferred
    except BaseException as error:  # noqa: BLE001 - the test inspects whatever it was
        return error
    raise AssertionError("the fetch succeeded")


def _fetch_actions(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m.get("action_type") == FEED_FETCH.action_type]


# -- request building (pure) -----------------------------------------------------------------------------

def test_odds_request_asks_bet365_for_yesterday_to_tomorrow_in_utc():
    path, query = odds_request("basketball", MARCH_FIRST_2030)
    assert path == "getodds/basketball"
    assert query == "cat=basket_10&json=1&bm=16&date_start=28.02.2030&date_end=02.03.2030"


def test_cricket_odds_live_under_soccer_without_bookmaker_or_dates():
    assert odds_request("cricket", MARCH_FIRST_2030) == ("getodds/soccer", "cat=cricket_10&json=1")


def test_results_request_uses_the_results_feed_path_of_the_sport():
    assert results_request("soccer", "home") == ("soccernew/home", "json=1")
    assert results_request("basketball", "d-7") == ("bsktbl/d-7", "json=1")
    assert results_request("tennis", "d-1") == ("tennis_scores/d-1", "json=1")
    assert results_request("table_tennis", "d-2") == ("table_tennis/d-2", "json=1")


@pytest.mark.parametrize("sport", sorted(SPORTS))
def test_every_sport_has_an_odds_request(sport):
    path, query = odds_request(sport, MARCH_FIRST_2030)
    assert path.startswith("getodds/") and "json=1" in query


def test_unknown_sport_or_page_is_a_value_error_before_any_request():
    client = GoalserveClient("http://feed.invalid", SECRET, Clock(), agent=None)
    with pytest.raises(ValueError):
        client.fetch_odds("curling")
    with pytest.raises(ValueError):
        client.fetch_results("soccer", "d-8")
    with pytest.raises(ValueError):
        client.fetch_results("soccer", "../home")


# -- Retry-After --------------------------------------------------------------------------------------------

def test_retry_after_reads_delta_seconds_and_http_dates_relative_to_now():
    now = 1_900_000_000.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 30 ", now) == 30.0
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now) == 90.0
    assert parse_retry_after(formatdate(now - 90, usegmt=True), now) == 0.0, "a past date never gives a negative wait"


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1e3", "Thu, 99 Foo 2030 00:00:00 GMT"])
def test_unreadable_retry_after_is_none(value):
    assert parse_retry_after(value, 1_900_000_000.0) is None


@given(st.integers(min_value=0, max_value=10**9))
def test_any_delta_seconds_value_is_taken_as_is(seconds):
    assert parse_retry_after(str(seconds), 0.0) == float(seconds)


# -- timeout and cancellation with a Clock and a stub agent --------------------------------------------------

class HangingAgent:
    """An IAgent whose requests never answer; records the URLs asked for and which were cancelled."""

    def __init__(self) -> None:
        self.urls: list[bytes] = []
        self.cancelled: list[bytes] = []

    def request(self, method: bytes, uri: bytes, headers: Any = None, bodyProducer: Any = None) -> Deferred:
        self.urls.append(uri)
        return Deferred(lambda _: self.cancelled.append(uri))


class FailingAgent:
    """An IAgent whose requests fail at once with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def request(self, method: bytes, uri: bytes, headers: Any = None, bodyProducer: Any = None) -> Deferred:
        return defer.fail(self.error)


def test_a_request_without_an_answer_times_out_on_the_clock_and_is_cancelled(eliot_messages):
    clock, agent = _clock_at(MARCH_FIRST_2030), HangingAgent()
    client = GoalserveClient("http://feed.invalid/getfeed", SECRET, clock, agent, timeout_s=15.0)
    fetched = client.fetch_odds("soccer")
    assert agent.urls[0].startswith(f"http://feed.invalid/getfeed/{SECRET}/getodds/soccer?cat=soccer_10".encode())
    clock.advance(14.9)
    assert not fetched.called
    clock.advance(0.2)
    error = fetched.result.value
    fetched.addErrback(lambda _: None)
    assert isinstance(error, FeedTimeout) and error.kind == "timeout"
    assert agent.cancelled == agent.urls
    assert "getodds/soccer" in str(error)
    failed = [m for m in _fetch_actions(eliot_messages) if m["action_status"] == "failed"]
    assert failed and failed[0]["kind"] == "timeout"
    _assert_key_absent(SECRET, error, client, messages=eliot_messages)


def test_cancelling_a_fetch_is_a_cancellation_not_a_timeout():
    clock, agent = Clock(), HangingAgent()
    client = GoalserveClient("http://feed.invalid", SECRET, clock, agent)
    fetched = client.fetch_results("soccer", "home")
    fetched.cancel()
    assert isinstance(fetched.result.value, CancelledError)
    fetched.addErrback(lambda _: None)
    assert agent.cancelled == agent.urls
    assert clock.getDelayedCalls() == [], "the timeout timer is cancelled with the fetch"


@pytest.mark.parametrize("error", [DNSLookupError("feed.invalid"), ConnectionResetError(104, "reset")])
def test_dns_and_socket_errors_are_unreachable(error):
    client = GoalserveClient("http://feed.invalid", SECRET, Clock(), FailingAgent(error))
    fetched = client.fetch_results("basketball", "d-1")
    failure = fetched.result
    fetched.addErrback(lambda _: None)
    assert isinstance(failure.value, FeedUnreachable)
    assert str(failure.value).startswith("bsktbl/d-1: ")


def test_unexpected_errors_are_not_disguised_as_feed_errors():
    client = GoalserveClient("http://feed.invalid", SECRET, Clock(), FailingAgent(ZeroDivisionError()))
    fetched = client.fetch_odds("soccer")
    assert isinstance(fetched.result.value, ZeroDivisionError)
    fetched.addErrback(lambda _: None)


def test_the_client_and_the_demo_feed_are_feed_sources():
    assert isinstance(GoalserveClient("http://feed.invalid", SECRET, Clock(), HangingAgent()), FeedSource)
    assert isinstance(DemoFeed(Clock(), run_in_thread=lambda fn, *args: defer.maybeDeferred(fn, *args)), FeedSource)
    assert not isinstance(object(), FeedSource)


def test_repr_names_the_feed_but_not_the_key():
    client = GoalserveClient("http://feed.invalid/getfeed/", SECRET, Clock(), HangingAgent())
    assert "http://feed.invalid/getfeed" in repr(client) and SECRET not in repr(client)


# -- over loopback TCP against the fake ---------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_odds_arrive_gzipped_and_decoded_with_the_expected_request(fake_goalserve: RunningFakeGoalserve,
                                                                        eliot_messages):
    fake_goalserve.fake.serve_bytes("getodds/soccer", ODDS_DOCUMENT)
    client = fake_goalserve.client(_reactor(), clock=_clock_at(MARCH_FIRST_2030))
    body = await client.fetch_odds("soccer")
    assert body == ODDS_DOCUMENT
    [seen] = fake_goalserve.fake.requests_for("getodds/soccer")
    assert seen.content_encoding == "gzip" and seen.accepts_gzip
    assert seen.args == {"cat": ["soccer_10"], "json": ["1"], "bm": ["16"],
                         "date_start": ["28.02.2030"], "date_end": ["02.03.2030"]}
    assert seen.header("Accept") == "application/json"
    assert seen.header("User-Agent").startswith("tenantsvc/")
    started, succeeded = _fetch_actions(eliot_messages)
    assert started["path"] == "getodds/soccer" and succeeded["action_status"] == "succeeded"
    assert succeeded["status"] == 200 and succeeded["bytes"] == len(ODDS_DOCUMENT)
    assert succeeded["duration_ms"] == 0.0, "duration is measured on the injected clock"


@pytest_twisted.ensureDeferred
async def test_cricket_odds_are_fetched_from_the_soccer_path(fake_goalserve: RunningFakeGoalserve):
    fake_goalserve.fake.serve_bytes("getodds/soccer", b'{"scores": {"category": []}}')
    client = fake_goalserve.client(_reactor())
    assert await client.fetch_odds("cricket") == b'{"scores": {"category": []}}'
    [seen] = fake_goalserve.fake.requests_for("getodds/soccer")
    assert seen.args == {"cat": ["cricket_10"], "json": ["1"]}


@pytest_twisted.ensureDeferred
async def test_results_pages_come_from_the_mapped_results_path(fake_goalserve: RunningFakeGoalserve):
    fake_goalserve.fake.serve_bytes("bsktbl/d-2", b'{"scores": {"category": {"@name": "NBA"}}}')
    client = fake_goalserve.client(_reactor())
    assert await client.fetch_results("basketball", "d-2") == b'{"scores": {"category": {"@name": "NBA"}}}'
    assert await client.fetch_results("hockey", "d-5") == EMPTY_RESULTS
    assert [r.path for r in fake_goalserve.fake.requests] == ["bsktbl/d-2", "hockey/d-5"]
    assert all(r.args == {"json": ["1"]} for r in fake_goalserve.fake.requests)


@pytest_twisted.ensureDeferred
async def test_an_empty_body_is_returned_as_is_for_the_parser_to_reject(fake_goalserve: RunningFakeGoalserve):
    fake_goalserve.fake.serve_empty("getodds/tennis")
    assert await fake_goalserve.client(_reactor()).fetch_odds("tennis") == b""


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(("retry_after", "expected"), [("7", 7.0), ("http-date", 120.0), (None, None)])
async def test_rate_limited_answer_carries_retry_after(fake_goalserve: RunningFakeGoalserve, eliot_messages,
                                                        retry_after, expected):
    clock = _clock_at(MARCH_FIRST_2030)
    if retry_after == "http-date":
        retry_after = formatdate(MARCH_FIRST_2030 + 120, usegmt=True)
    fake_goalserve.fake.serve_status("getodds/hockey", 429, retry_after=retry_after, body=b'{"message": "slow"}')
    client = fake_goalserve.client(_reactor(), clock=clock)
    error = await _failure_of(client.fetch_odds("hockey"))
    assert isinstance(error, FeedHttpError) and error.status == 429 and error.kind == "rate_limited"
    assert error.retry_after_s == expected
    [failed] = [m for m in _fetch_actions(eliot_messages) if m["action_status"] == "failed"]
    assert failed["status"] == 429 and failed["kind"] == "rate_limited"
    _assert_key_absent(fake_goalserve.api_key, error, client, messages=eliot_messages)


@pytest_twisted.ensureDeferred
async def test_server_error_is_an_http_error_without_retry_after(fake_goalserve: RunningFakeGoalserve,
                                                                 eliot_messages):
    fake_goalserve.fake.serve_status("soccernew/home", 500)
    client = fake_goalserve.client(_reactor())
    error = await _failure_of(client.fetch_results("soccer", "home"))
    assert isinstance(error, FeedHttpError) and error.status == 500 and error.kind == "server_error"
    assert error.retry_after_s is None
    assert str(error) == "soccernew/home: feed answered HTTP 500"
    _assert_key_absent(fake_goalserve.api_key, error, client, messages=eliot_messages)


@pytest_twisted.ensureDeferred
async def test_a_wrong_key_is_refused_and_never_echoed(fake_goalserve: RunningFakeGoalserve, eliot_messages):
    wrong_key = "wrong-key-31f0aa"
    client = fake_goalserve.client(_reactor(), api_key=wrong_key)
    error = await _failure_of(client.fetch_odds("soccer"))
    assert isinstance(error, FeedHttpError) and error.status == 403
    assert [r.key for r in fake_goalserve.fake.requests] == [wrong_key]
    _assert_key_absent(wrong_key, error, client, messages=eliot_messages)


@pytest_twisted.ensureDeferred
async def test_redirects_are_not_followed(fake_goalserve: RunningFakeGoalserve):
    fake_goalserve.fake.serve_status("getodds/golf", 302)
    error = await _failure_of(fake_goalserve.client(_reactor()).fetch_odds("golf"))
    assert isinstance(error, FeedHttpError) and error.status == 302
    assert len(fake_goalserve.fake.requests) == 1


@pytest_twisted.ensureDeferred
async def test_a_slow_feed_times_out_and_the_connection_is_dropped(fake_goalserve: RunningFakeGoalserve,
                                                                   eliot_messages):
    gate = fake_goalserve.fake.hold("getodds/darts")
    client = fake_goalserve.client(_reactor(), timeout_s=0.2)
    error = await _failure_of(client.fetch_odds("darts"))
    assert isinstance(error, FeedTimeout)
    [held] = fake_goalserve.fake.requests_for("getodds/darts")
    await held.disconnected  # the client dropped the connection when it gave up
    gate.release()
    assert held.status is None, "nobody was left to answer"
    _assert_key_absent(fake_goalserve.api_key, error, client, messages=eliot_messages)


@pytest_twisted.ensureDeferred
async def test_a_feed_stalling_mid_body_times_out_and_the_connection_is_dropped(
        fake_goalserve: RunningFakeGoalserve):
    fake_goalserve.fake.serve_bytes("soccernew/d-2", ODDS_DOCUMENT)
    fake_goalserve.fake.hold("soccernew/d-2", mid_body=True)
    client = fake_goalserve.client(_reactor(), timeout_s=0.2)
    error = await _failure_of(client.fetch_results("soccer", "d-2"))
    assert isinstance(error, FeedTimeout)
    [held] = fake_goalserve.fake.requests_for("soccernew/d-2")
    await held.disconnected  # would hang if the client kept the stalled connection


@pytest_twisted.ensureDeferred
async def test_a_body_over_the_limit_is_malformed(fake_goalserve: RunningFakeGoalserve, eliot_messages):
    fake_goalserve.fake.serve_bytes("getodds/soccer", ODDS_DOCUMENT)
    client = fake_goalserve.client(_reactor(), max_body_bytes=len(ODDS_DOCUMENT) - 1)
    error = await _failure_of(client.fetch_odds("soccer"))
    assert isinstance(error, FeedMalformed)
    _assert_key_absent(fake_goalserve.api_key, error, client, messages=eliot_messages)


@pytest_twisted.ensureDeferred
async def test_connection_refused_is_unreachable(eliot_messages):
    from twisted.internet import endpoints
    from twisted.internet.protocol import Factory
    from twisted.web.client import Agent

    reactor = _reactor()
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory())
    closed_port = port.getHost().port
    await port.stopListening()
    client = GoalserveClient(f"http://127.0.0.1:{closed_port}", SECRET, reactor, Agent(reactor), timeout_s=5.0)
    error = await _failure_of(client.fetch_results("tennis", "home"))
    assert isinstance(error, FeedUnreachable) and error.kind == "unreachable"
    assert str(error).startswith("tennis_scores/home: connection failed")
    _assert_key_absent(SECRET, error, client, messages=eliot_messages)
