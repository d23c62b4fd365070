"""What a burst of password operations shows: the queue waiting for a hashing thread, its peak, each
operation's wait and run time, and refusals, on the real thread pool with a hasher the test holds."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import pytest_twisted
from argon2 import PasswordHasher
from twisted.internet.defer import gatherResults

from tenantsvc.adapters.passwords import PasswordHashing, PasswordHashingBusy

CHEAP = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


class GatedHasher(PasswordHasher):
    """A real argon2id hasher whose ``hash`` waits (in the hashing thread) until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__(**CHEAP)
        self.gate = threading.Event()

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        assert self.gate.wait(10), "the test never opened the gate"
        return super().hash(password, salt=salt)


@pytest.fixture
def burst() -> Any:
    from twisted.internet import reactor

    hasher = GatedHasher()
    timings: list[tuple[str, float, float]] = []
    rejected: list[None] = []
    hashing = PasswordHashing(reactor, hasher=hasher, threads=1, max_pending=4,
                              on_timing=lambda op, wait_s, run_s: timings.append((op, wait_s, run_s)),
                              on_rejected=lambda: rejected.append(None))
    hashing.startService()  # its dummy hash takes the only thread and waits at the gate
    yield hashing, hasher, timings, rejected
    hasher.gate.set()
    hashing.stopService()


@pytest_twisted.ensureDeferred
async def test_operations_beyond_the_threads_are_the_queue_and_its_peak_outlives_them(burst):
    hashing, hasher, timings, _ = burst
    assert (hashing.queue_depth, hashing.queue_depth_peak()) == (0, 0)
    waiting = [hashing.hash(f"password {n}") for n in range(3)]
    assert hashing.queue_depth == 3 and hashing.queue_depth_peak() == 3
    hasher.gate.set()
    hashes = await gatherResults(waiting)
    assert all(value.startswith("$argon2id$") for value in hashes)
    assert hashing.queue_depth == 0
    assert hashing.queue_depth_peak() == 3, "a scrape after the burst still sees how long the queue got"
    assert len(timings) == 4 and {op for op, _, _ in timings} == {"hash"}
    assert all(wait_s >= 0 and run_s > 0 for _, wait_s, run_s in timings)


@pytest_twisted.ensureDeferred
async def test_verifications_are_timed_as_verify(burst):
    hashing, hasher, timings, _ = burst
    hasher.gate.set()
    stored = await hashing.hash("correct horse")
    assert (await hashing.verify(stored, "correct horse")).ok
    assert [op for op, _, _ in timings][-1] == "verify"


@pytest_twisted.ensureDeferred
async def test_an_operation_past_the_bound_is_refused_at_once_and_counted(burst):
    hashing, hasher, _, rejected = burst
    waiting = [hashing.hash(f"password {n}") for n in range(3)]  # with the dummy: 4 pending, the bound
    with pytest.raises(PasswordHashingBusy):
        await hashing.hash("one too many")
    assert len(rejected) == 1
    hasher.gate.set()
    await gatherResults(waiting)


@pytest_twisted.ensureDeferred
async def test_the_service_wires_the_hashing_pool_into_its_metrics():
    from prometheus_client import CollectorRegistry
    from twisted.internet import reactor

    from tenantsvc.config import load_settings
    from tenantsvc.obs.metrics import Metrics
    from tenantsvc.composition.core_parts import build_players

    metrics = Metrics(CollectorRegistry(), "web")
    players = build_players(load_settings({}), reactor, metrics, reads=None, writes=None, redis=None)
    players.passwords.hasher = PasswordHasher(**CHEAP)
    players.passwords.startService()
    try:
        await players.passwords.hash("correct horse")
    finally:
        players.passwords.stopService()
    registry = metrics.registry
    assert registry.get_sample_value("password_hashing_threads") == players.passwords.threads == 2
    assert registry.get_sample_value("password_hashing_duration_seconds_count", {"op": "hash"}) >= 1
    assert registry.get_sample_value("password_hashing_wait_seconds_count") >= 1
    assert registry.get_sample_value("password_hashing_queue_depth") == 0
