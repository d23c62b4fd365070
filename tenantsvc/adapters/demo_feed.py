"""``FeedSource`` from documents packaged under ``tenantsvc/demo_feed/``, so a laptop runs without a feed key.

Files: ``odds/<sport>.json`` and ``results/<results_feed_path(sport)>/<page>.json``. A missing odds file is
a 404 (``FeedHttpError``), as the real feed would answer; a missing results page is an empty results
document. Dates in the files are written as if today were ``DEMO_TODAY`` (01.01.2030): every
``date``/``formatted_date`` value (also ``@date``/``@formatted_date``) in ``dd.mm.yyyy`` form is moved by
(today in UTC − 01.01.2030) days, and ``scores.ts`` becomes the current unix time, so demo matches are
always upcoming and the odds always fresh.

Reading, decoding, shifting and re-encoding a file is blocking work, done by an injected ``run_in_thread``
(``thread_runner(reactor, threadpool)`` in production; tests pass a synchronous runner and stay
threadless). The clock is read on the calling (reactor) thread; the work in the thread is a pure
function of the file, the day shift and the timestamp.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import date, datetime
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

from tenantsvc.core.clock import utc_datetime
from tenantsvc.adapters.goalserve import FEED_DATE_FORMAT, require_result_page, require_sport
from tenantsvc.core.feed_errors import FeedHttpError, FeedMalformed
from tenantsvc.core.odds import results_feed_path

DEMO_TODAY = date(2030, 1, 1)
DATE_KEYS = frozenset({"date", "formatted_date", "@date", "@formatted_date"})
FEED_DATE = re.compile(r"\d{2}\.\d{2}\.\d{4}")
EMPTY_RESULTS = b'{"scores": {}}'

BlockingRunner = Callable[..., Deferred]
"""``run_in_thread(fn, *args)``: a Deferred of ``fn(*args)`` computed off the reactor thread."""


def thread_runner(reactor: Any, threadpool: Any) -> BlockingRunner:
    """A ``BlockingRunner`` running work in ``threadpool`` and firing on ``reactor``."""
    return functools.partial(deferToThreadPool, reactor, threadpool)


def packaged_demo_root() -> Traversable:
    """The ``tenantsvc/demo_feed`` directory inside the installed package."""
    return files("tenantsvc").joinpath("demo_feed")


def shift_feed_date(text: str, days: int) -> str:
    """``text`` moved by ``days`` if it is a ``dd.mm.yyyy`` date; anything else (``"Sep 11"``) unchanged."""
    if not FEED_DATE.fullmatch(text):
        return text
    try:
        day = datetime.strptime(text, FEED_DATE_FORMAT).date()
    except ValueError:
        return text
    return date.fromordinal(day.toordinal() + days).strftime(FEED_DATE_FORMAT)


def shift_demo_dates(document: Any, days: int) -> Any:
    """A copy of the decoded ``document`` with every date under a ``DATE_KEYS`` key moved by ``days``."""
    if isinstance(document, list):
        return [shift_demo_dates(item, days) for item in document]
    if isinstance(document, dict):
        return {key: shift_feed_date(value, days) if key in DATE_KEYS and isinstance(value, str)
                else shift_demo_dates(value, days)
                for key, value in document.items()}
    return document


def freshen_demo_document(raw: bytes, days: int, now_ts: int, name: str) -> bytes:
    """The demo document ``raw`` with dates moved by ``days`` and ``scores.ts`` set to ``now_ts``, re-encoded.

    Raises FeedMalformed (naming ``name``) if ``raw`` is not JSON.
    """
    try:
        document = json.loads(raw)
    except ValueError as error:
        raise FeedMalformed(f"demo feed {name}: not JSON") from error
    document = shift_demo_dates(document, days)
    if isinstance(document, dict) and isinstance(document.get("scores"), dict):
        document["scores"]["ts"] = str(now_ts)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def load_demo_document(resource: Traversable, days: int, now_ts: int, name: str) -> bytes | None:
    """Read and freshen the demo file ``resource`` (blocking), or None if it does not exist."""
    try:
        raw = resource.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    return freshen_demo_document(raw, days, now_ts, name)


class DemoFeed:
    """``FeedSource`` over the packaged demo documents (or those under ``root``), dated relative to today."""

    def __init__(self, clock: Any, run_in_thread: BlockingRunner, root: Traversable | None = None):
        self._clock = clock
        self._run_in_thread = run_in_thread
        self._root = packaged_demo_root() if root is None else root

    def fetch_odds(self, sport: str) -> "Deferred[bytes]":
        """``odds/<sport>.json``, freshened; FeedHttpError(404) if there is no such file; ValueError if unknown."""
        require_sport(sport)
        return self._load(f"odds/{sport}.json").addCallback(_odds_or_404, sport)

    def fetch_results(self, sport: str, page: str) -> "Deferred[bytes]":
        """``results/<results path>/<page>.json``, freshened, or an empty results document if missing."""
        require_sport(sport)
        require_result_page(page)
        return self._load(f"results/{results_feed_path(sport)}/{page}.json").addCallback(_results_or_empty)

    def _load(self, name: str) -> "Deferred[bytes | None]":
        """Load ``name`` (a ``/``-separated path under the root) in the blocking runner."""
        now = self._clock.seconds()
        days = (utc_datetime(now).date() - DEMO_TODAY).days
        resource = self._root.joinpath(*name.split("/"))
        return self._run_in_thread(load_demo_document, resource, days, int(now), name)


def _odds_or_404(document: bytes | None, sport: str) -> bytes:
    if document is None:
        raise FeedHttpError(404, f"demo feed has no odds for {sport}")
    return document


def _results_or_empty(document: bytes | None) -> bytes:
    return EMPTY_RESULTS if document is None else document
