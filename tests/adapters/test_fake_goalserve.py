"""The fake Goalserve itself: default routes, missing fixtures as 404, gzip only when asked, holds, the log."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred
from treq import content
from twisted.web.client import Agent
from twisted.web.http_headers import Headers

from tests.support.fake_goalserve import (
    DEFAULT_API_KEY, EMPTY_RESULTS, FakeGoalserve, RunningFakeGoalserve, start_fake_goalserve,
)
from tests.support.fake_goalserve import fake_goalserve  # noqa: F401 - a fixture


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


async def _get(server: RunningFakeGoalserve, path: str, *, key: str = DEFAULT_API_KEY,
               gzip_ok: bool = False) -> tuple[int, dict[bytes, list[bytes]], bytes]:
    """GET ``/<key>/<path>`` with a bare Agent (no decoding): status, headers, raw body."""
    headers = Headers({b"Accept-Encoding": [b"gzip"]} if gzip_ok else {})
    response = await Agent(_reactor()).request(b"GET", f"{server.base_url}/{key}/{path}".encode(), headers)
    body = await content(response)
    return response.code, dict(response.headers.getAllRawHeaders()), body


@pytest_twisted.ensureDeferred
async def test_default_fixture_routes_are_404_until_the_file_exists(tmp_path: Path):
    server = await start_fake_goalserve(_reactor(), FakeGoalserve(fixtures_dir=tmp_path))
    try:
        status, _, _ = await _get(server, "getodds/soccer?cat=soccer_10&json=1")
        assert status == 404
        (tmp_path / "odds_soccer_list.json").write_bytes(b'{"scores": {"ts": "5"}}')
        status, _, body = await _get(server, "getodds/soccer?cat=soccer_10&json=1")
        assert (status, body) == (200, b'{"scores": {"ts": "5"}}')
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_other_results_pages_are_empty_and_unknown_paths_404(fake_goalserve: RunningFakeGoalserve):
    assert (await _get(fake_goalserve, "hockey/d-4?json=1"))[::2] == (200, EMPTY_RESULTS)
    assert (await _get(fake_goalserve, "getodds/hockey?json=1"))[0] == 404
    assert (await _get(fake_goalserve, "hockey/d-9"))[0] == 404


@pytest_twisted.ensureDeferred
async def test_a_wrong_key_gets_403_and_is_recorded(fake_goalserve: RunningFakeGoalserve):
    fake_goalserve.fake.serve_bytes("bsktbl/home", b"{}")
    assert (await _get(fake_goalserve, "bsktbl/home", key="nope"))[0] == 403
    [seen] = fake_goalserve.fake.requests_for("bsktbl/home")
    assert (seen.key, seen.status) == ("nope", 403)


@pytest_twisted.ensureDeferred
async def test_gzip_only_when_the_client_accepts_it(fake_goalserve: RunningFakeGoalserve):
    document = b'{"scores": {"categories": []}}' * 10
    fake_goalserve.fake.serve_bytes("getodds/golf", document)
    _, plain_headers, plain = await _get(fake_goalserve, "getodds/golf")
    _, gzip_headers, compressed = await _get(fake_goalserve, "getodds/golf", gzip_ok=True)
    assert plain == document and b"Content-Encoding" not in plain_headers
    assert gzip_headers[b"Content-Encoding"] == [b"gzip"] and gzip.decompress(compressed) == document
    assert [r.content_encoding for r in fake_goalserve.fake.requests] == [None, "gzip"]


@pytest_twisted.ensureDeferred
async def test_status_replies_carry_retry_after(fake_goalserve: RunningFakeGoalserve):
    fake_goalserve.fake.serve_status("getodds/mma", 429, retry_after="12")
    status, headers, _ = await _get(fake_goalserve, "getodds/mma")
    assert status == 429 and headers[b"Retry-After"] == [b"12"]


@pytest_twisted.ensureDeferred
async def test_held_requests_wait_for_release_then_get_their_reply(fake_goalserve: RunningFakeGoalserve):
    fake_goalserve.fake.serve_bytes("soccernew/d-3", b'{"scores": {"x": 1}}')
    gate = fake_goalserve.fake.hold("soccernew/d-3")
    pending = Agent(_reactor()).request(b"GET", f"{fake_goalserve.base_url}/{DEFAULT_API_KEY}/soccernew/d-3".encode())
    seen = await fake_goalserve.fake.arrived("soccernew/d-3")
    assert gate.held == 1 and seen.status is None
    gate.release()
    response = await pending
    assert await content(response) == b'{"scores": {"x": 1}}' and seen.status == 200



@pytest_twisted.ensureDeferred
async def test_a_mid_body_hold_sends_headers_and_half_the_body_first(fake_goalserve: RunningFakeGoalserve):
    from treq import collect

    document = b'{"scores": {"categories": ["' + b"x" * 1000 + b'"]}}'
    fake_goalserve.fake.serve_bytes("getodds/golf", document)
    gate = fake_goalserve.fake.hold("getodds/golf", mid_body=True)
    response = await Agent(_reactor()).request(b"GET", f"{fake_goalserve.base_url}/{DEFAULT_API_KEY}/getodds/golf".encode())
    assert response.code == 200 and response.length == len(document)
    half_received: Deferred = Deferred()
    chunks: list[bytes] = []

    def received(chunk: bytes) -> None:
        chunks.append(chunk)
        if sum(map(len, chunks)) >= len(document) // 2 and not half_received.called:
            half_received.callback(None)

    done = collect(response, received)
    await half_received
    assert not done.called and sum(map(len, chunks)) == len(document) // 2
    gate.release()
    await done
    assert b"".join(chunks) == document
