"""Fair rate limits on real ``twistd tenantsvc`` processes with the default limits (issue 11, item 6), with the
in-process limiter and with the fleet-wide one on a throwaway Redis: one client's odds flood is limited and never
makes another client's ``/me`` answer 429; 150 bad logins from 5 addresses leave the real player's login from a
6th address alone while the attacker addresses are limited; 20 players with a short think time see no 429 at all
while an abusive client is limited (``tests.support.player_traffic``: a few seconds on every run, the README's
figures under ``-m load``).

Each client connects from its own loopback address (every 127.x.y.z is a distinct socket peer on Linux).
Counts are bounded and nothing here asserts a wall time.
"""

from __future__ import annotations

import http.client
import json
import math
import time
from typing import Any, Iterator

import pytest

from tests.support.player_traffic import MIX, PHASES, PlayerTraffic
from tests.support.tenantsvc_process import TenantsvcProcess, service_env

pytestmark = pytest.mark.e2e

PASSWORD = "fair limits password"
LISTEN = ("--demo", "--listen", "tcp:0:interface=127.0.0.1")


class LoopbackClient:
    """One keep-alive HTTP/1.1 connection to ``service`` from the local address ``source``."""

    def __init__(self, service: TenantsvcProcess, source: str):
        assert service.port is not None
        self._conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10.0, source_address=(source, 0))

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
                ) -> tuple[int, dict[str, str], Any]:
        """(status, lower-cased headers, JSON body or None)."""
        all_headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        self._conn.request(method, path, body=data, headers=all_headers)
        response = self._conn.getresponse()
        payload = response.read()
        headers_out = {name.lower(): value for name, value in response.getheaders()}
        parsed = json.loads(payload) if headers_out.get("content-type", "").startswith("application/json") else None
        return response.status, headers_out, parsed

    def login(self, username: str, password: str = PASSWORD) -> tuple[int, dict[str, str], Any]:
        return self.request("POST", "/demo/api/auth/login", {"username": username, "password": password})

    def close(self) -> None:
        self._conn.close()


@pytest.fixture(params=["in_process", pytest.param("redis", marks=pytest.mark.integration)])
def limiter_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """No Redis (the in-process limiter), or a flushed throwaway Redis (the Lua limiter)."""
    if request.param == "in_process":
        return {}
    redis_server = request.getfixturevalue("redis_server")
    redis_server.flushall()
    return {"REDIS_URL": redis_server.url}


@pytest.fixture
def service(start_tenantsvc: Any, limiter_env: dict[str, str]) -> TenantsvcProcess:
    """A ready ``tenantsvc --demo`` with every limit at its default."""
    return start_tenantsvc(*LISTEN, env=service_env(**limiter_env))


@pytest.fixture
def clients(service: TenantsvcProcess) -> Iterator[Any]:
    """``clients(address)``: a new keep-alive connection from ``address``; all closed at teardown."""
    opened: list[LoopbackClient] = []

    def connect(address: str) -> LoopbackClient:
        client = LoopbackClient(service, address)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


def signed_up(client: LoopbackClient, username: str) -> str:
    """Register and log in ``username`` from ``client``; the ``tsid=…`` cookie."""
    status, _, body = client.request("POST", "/demo/api/auth/register", {"username": username, "password": PASSWORD})
    assert status == 201, body
    status, headers, body = client.login(username)
    assert status == 200, body
    return headers["set-cookie"].split(";", 1)[0]


def test_one_clients_odds_flood_is_limited_and_never_answers_another_clients_me_429(clients):
    player = clients("127.0.0.10")
    cookie = signed_up(player, "alice")
    flooder = clients("127.0.0.66")
    flood, players_answers = [], []
    began = time.monotonic()
    for _ in range(10):
        flood += [flooder.request("GET", "/demo/api/public/odds/soccer") for _ in range(30)]
        players_answers.append(player.request("GET", "/demo/api/me", headers={"Cookie": cookie})[0])
        players_answers.append(player.request("GET", "/demo/api/public/odds/soccer")[0])
    elapsed_s = time.monotonic() - began
    statuses = [status for status, _, _ in flood]
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) <= 120 + math.ceil(5 * elapsed_s)  # the client's burst, then 5 a second
    assert statuses.count(429) >= 1
    refusals = [(body, headers) for status, headers, body in flood if status == 429]
    assert all(body["scope"] == "client" and body["bucket"] == "read_client" for body, _ in refusals)
    assert all(int(headers["retry-after"]) == body["retry_after"] >= 1 for body, headers in refusals)
    assert players_answers == [200] * 20, "the flood spent only the flooder's own bucket"


def test_bad_logins_from_five_addresses_leave_the_real_players_login_from_a_sixth(clients):
    player = clients("127.0.0.10")
    signed_up(player, "alice")
    attackers = [clients(f"127.0.0.{71 + n}") for n in range(5)]
    began = time.monotonic()
    answers = [attackers[n % 5].login("alice", f"guess number {n}") for n in range(150)]
    elapsed_s = time.monotonic() - began
    statuses = [status for status, _, _ in answers]
    assert set(statuses) == {401, 429}
    # 10 tries at alice per address, then one every 20 s
    assert 50 <= statuses.count(401) <= 5 * (10 + math.ceil(elapsed_s / 20))
    assert {body["bucket"] for status, _, body in answers if status == 429} == {"login_user"}
    assert attackers[0].login("alice")[0] == 429, "an attacker address stays limited, even with the password"
    status, headers, body = clients("127.0.0.76").login("alice")
    assert status == 200, body
    assert headers["set-cookie"].startswith("tsid=")


@pytest.mark.parametrize("phase_s, think_s", [(4.0, 0.5), pytest.param(60.0, 2.0, marks=pytest.mark.load)],
                         ids=["quick", "full"])
def test_twenty_players_see_no_429_while_an_abusive_client_is_limited(service, limiter_env, phase_s, think_s):
    """``quick``: 4 s per phase at a quarter of the think time, more reads (about 150 a phase) than the old
    tenant-wide default (100, then 2/s) let through. ``full`` (``-m load``, about 2.5 min): the README's figures."""
    phases = PlayerTraffic(service.port, players=20, think_s=think_s).run(phase_s)
    print(f"\nFIGURES 20 players, think {think_s:g} s, {phase_s:g} s per phase, "
          f"{'Redis' if limiter_env else 'in-process'} limiter:")
    for phase, kinds in phases.items():
        for kind, row in kinds.items():
            if row["n"]:
                print(f"  {phase:<8} {kind:<7} n {row['n']:>6} ({row['n'] / phase_s:7.1f}/s)  429 "
                      f"{row['rate_limited_percent']:5.1f} %  median {row['median_ms']:5.1f} ms  p99 "
                      f"{row['p99_ms']:6.1f} ms  {row['statuses']}")
    for phase in PHASES:
        for kind in MIX:
            assert set(phases[phase][kind]["statuses"]) <= {"200", "201"}, (phase, kind, phases[phase][kind])
        reads = sum(phases[phase][kind]["n"] for kind in ("odds", "me", "bets"))
        assert reads > 100 + 2 * phase_s, f"too few reads ({reads}) to show the old tenant-wide limit would refuse"
    abuser = phases["flood"]["abuser"]
    assert abuser["rate_limited_percent"] > 50 and set(abuser["statuses"]) == {"200", "429"}, abuser
