"""Password hashing with argon2id (argon2-cffi), always in a dedicated thread pool, never on the reactor.

Each hash or verification costs tens of milliseconds of CPU and (with the default RFC 9106 low-memory
profile) 64 MiB, so the pool is small and the number of operations waiting for it is bounded: past
``max_pending`` a caller gets ``PasswordHashingBusy`` at once instead of queueing without limit.

``verify_unknown`` does the work of a real verification against a dummy hash with the same parameters,
so a login for a username that does not exist takes as long as one with a wrong password.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")
DEFAULT_THREADS = 2
DEFAULT_MAX_PENDING = 64


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

    name = "password-hashing"

    def __init__(self, reactor: Any, *, hasher: PasswordHasher | None = None, threads: int = DEFAULT_THREADS,
                 max_pending: int = DEFAULT_MAX_PENDING):
        self._reactor = reactor
        self.hasher = hasher or PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        self._pool = ThreadPool(minthreads=0, maxthreads=threads, name="password-hashing")
        self._max_pending = max_pending
        self.pending = 0
        self._dummy_hash: str | None = None

    def startService(self) -> None:
        """Start the thread pool and compute the dummy hash in it."""
        super().startService()
        self._pool.start()
        self._run(self.hasher.hash, secrets.token_urlsafe(24)).addCallbacks(self._keep_dummy, lambda _: None)

    def stopService(self) -> None:
        """Stop the thread pool (waits for an operation in progress to finish)."""
        super().stopService()
        self._pool.stop()

    def hash(self, password: str) -> "Deferred[str]":
        """The argon2id hash of ``password`` (encoded, with its salt and parameters)."""
        return self._run(self.hasher.hash, password)

    def verify(self, stored_hash: str, password: str) -> "Deferred[Verification]":
        """Check ``password`` against ``stored_hash``."""
        return self._run(_verify, self.hasher, stored_hash, password)

    async def verify_unknown(self, password: str) -> Verification:
        """The same work as ``verify`` for a user that does not exist; never matches."""
        if self._dummy_hash is None:
            self._keep_dummy(await self.hash(secrets.token_urlsafe(24)))
        assert self._dummy_hash is not None
        await self.verify(self._dummy_hash, password)
        return Verification(False)

    def _keep_dummy(self, dummy_hash: str) -> None:
        self._dummy_hash = self._dummy_hash or dummy_hash

    def _run(self, fn: Callable[..., T], *args: Any) -> "Deferred[T]":
        if self.pending >= self._max_pending:
            return fail(PasswordHashingBusy(f"{self.pending} password operations already waiting"))
        self.pending += 1

        def done(result: Any) -> Any:
            self.pending -= 1
            return result

        return deferToThreadPool(self._reactor, self._pool, fn, *args).addBoth(done)
