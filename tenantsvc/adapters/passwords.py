"""Password hashing with argon2id (argon2-cffi), always in a dedicated thread pool, never on the reactor.

Each hash or verification costs tens of milliseconds of CPU and (with the default RFC 9106 low-memory
profile) 64 MiB, so the pool is small and the number of operations waiting for it is bounded: past
``max_pending`` a caller gets ``PasswordHashingBusy`` at once instead of queueing without limit.

``verify_unknown`` does the work of a real verification against a dummy hash with the same parameters,
so a login for a username that does not exist takes as long as one with a wrong password.

What a burst of logins costs is visible (issue 13): ``queue_depth`` (operations waiting for a thread),
its peak over the last minute, and ``on_timing(op, wait_s, run_s)``, called in the hashing thread with the
time each operation waited for a thread and the time it ran; ``on_rejected()`` for each refusal.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from tenantsvc.core.peak_window import PeakWindow

T = TypeVar("T")
DEFAULT_THREADS = 2
DEFAULT_MAX_PENDING = 64
PEAK_WINDOW_S = 60.0


class PasswordHashingBusy(Exception):
    """Too many hash/verify operations are already waiting; the caller should answer 503 and retry later."""


@dataclass(frozen=True)
class Verification:
    """Whether a password matched, and whether its stored hash should be replaced (parameters changed)."""

    ok: bool
    needs_rehash: bool = False


def _verify(hasher: PasswordHasher, stored_hash: str, password: str) -> Verification:
    """Runs in a pool thread. A malformed stored hash never matches."""
    try:
        hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return Verification(False)
    return Verification(True, hasher.check_needs_rehash(stored_hash))


class PasswordHashing(Service):
    """argon2id hashing on its own thread pool; a Service so the pool starts and stops with the process."""

    name = "password-hashing"  # type: ignore[assignment]  # Twisted declares Service.name = None

    def __init__(self, reactor: Any, *, hasher: PasswordHasher | None = None, threads: int = DEFAULT_THREADS,
                 max_pending: int = DEFAULT_MAX_PENDING,
                 on_timing: Callable[[str, float, float], None] | None = None,
                 on_rejected: Callable[[], None] | None = None):
        self._reactor = reactor
        self.hasher = hasher or PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        self.threads = threads
        self._pool = ThreadPool(minthreads=0, maxthreads=threads, name="password-hashing")
        self._max_pending = max_pending
        self._on_timing = on_timing
        self._on_rejected = on_rejected
        self.pending = 0  # submitted and not finished: running (at most ``threads``) or waiting
        self._queue_peak = PeakWindow(PEAK_WINDOW_S)
        self._dummy_hash: str | None = None

    @property
    def queue_depth(self) -> int:
        """Operations waiting for a hashing thread (the pool runs them first come, first served)."""
        return max(0, self.pending - self.threads)

    def queue_depth_peak(self) -> int:
        """The longest the queue was at any moment of the last ``PEAK_WINDOW_S`` seconds (now included)."""
        return int(self._queue_peak.peak(self._reactor.seconds(), self.queue_depth))

    def startService(self) -> None:
        """Start the thread pool and compute the dummy hash in it."""
        super().startService()
        self._pool.start()
        self._run("hash", self.hasher.hash, secrets.token_urlsafe(24)).addCallbacks(self._keep_dummy, lambda _: None)

    def stopService(self) -> None:
        """Stop the thread pool (waits for an operation in progress to finish)."""
        super().stopService()
        self._pool.stop()

    def hash(self, password: str) -> "Deferred[str]":
        """The argon2id hash of ``password`` (encoded, with its salt and parameters)."""
        return self._run("hash", self.hasher.hash, password)

    def verify(self, stored_hash: str, password: str) -> "Deferred[Verification]":
        """Check ``password`` against ``stored_hash``."""
        return self._run("verify", _verify, self.hasher, stored_hash, password)

    async def verify_unknown(self, password: str) -> Verification:
        """The same work as ``verify`` for a user that does not exist; never matches."""
        if self._dummy_hash is None:
            self._keep_dummy(await self.hash(secrets.token_urlsafe(24)))
        assert self._dummy_hash is not None
        await self.verify(self._dummy_hash, password)
        return Verification(False)

    def _keep_dummy(self, dummy_hash: str) -> None:
        self._dummy_hash = self._dummy_hash or dummy_hash

    def _run(self, op: str, fn: Callable[..., T], *args: Any) -> "Deferred[T]":
        if self.pending >= self._max_pending:
            if self._on_rejected is not None:
                self._on_rejected()
            return fail(PasswordHashingBusy(f"{self.pending} password operations already waiting"))
        self.pending += 1
        self._queue_peak.observe(self.queue_depth, self._reactor.seconds())

        def done(result: Any) -> Any:
            self.pending -= 1
            return result

        return deferToThreadPool(self._reactor, self._pool, self._timed, op, time.perf_counter(), fn,
                                 *args).addBoth(done)

    def _timed(self, op: str, submitted_at: float, fn: Callable[..., T], *args: Any) -> T:
        """In a hashing thread: run ``fn`` and report how long it waited for the thread and how long it ran."""
        started_at = time.perf_counter()
        try:
            return fn(*args)
        finally:
            if self._on_timing is not None:
                self._on_timing(op, started_at - submitted_at, time.perf_counter() - started_at)
