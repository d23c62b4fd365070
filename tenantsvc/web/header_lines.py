"""Request header lines parsed once per process, not once per request.

Twisted's ``HTTPChannel.headerReceived`` splits, canonicalises, strips and checks every header line of every
request (~1.2 µs a line here). The lines themselves repeat: a front-end sends the same ``Host``,
``User-Agent``, ``Accept``, ``Accept-Encoding``, ``Origin`` and ``Referer`` lines, and an ``If-None-Match``
with the ETag it was given, on every page load. ``HeaderLines`` remembers what a line parses to, so a line
seen before costs one dictionary lookup.

Lines Twisted must see itself are never remembered: malformed ones (it answers 400), the framing headers
``Content-Length`` and ``Transfer-Encoding`` (it chooses the body decoder and refuses conflicting framing),
credentials (``Authorization``, ``Proxy-Authorization``, ``Cookie``: kept out of a process-wide table) and
lines longer than ``max_line_bytes``. The table is bounded: full, it starts over.
"""

from __future__ import annotations

from tenantsvc.core.bounded_memo import BoundedMemo
from tenantsvc.web.request import canonical_header

ParsedHeader = tuple[bytes, bytes]

# Headers whose lines always go through Twisted's own headerReceived.
TWISTED_ONLY = frozenset(canonical_header(name) for name in (
    b"Content-Length", b"Transfer-Encoding", b"Authorization", b"Proxy-Authorization", b"Cookie"))


def _canonical_or_none(name: bytes) -> bytes | None:
    try:
        return canonical_header(name)
    except ValueError:  # not a token: Twisted answers 400
        return None


_CANONICAL_NAMES: BoundedMemo[bytes, bytes | None] = BoundedMemo(_canonical_or_none, max_entries=1024)


def plain_header(line: bytes) -> ParsedHeader | None:
    """``(name, value)`` as Twisted's ``headerReceived`` stores ``line``, or None when Twisted must parse it.

    The name is canonicalised (``if-none-match`` → ``If-None-Match``), the value stripped of spaces and tabs;
    a line without a colon, with an invalid name or with NUL, CR or LF in its value is None, as is a
    ``TWISTED_ONLY`` header.
    """
    raw_name, colon, value = line.partition(b":")
    name = _CANONICAL_NAMES[raw_name] if colon else None
    if name is None:
        return None
    value = value.strip(b" \t")
    if name in TWISTED_ONLY or len(value.translate(None, b"\x00\r\n")) != len(value):
        return None
    return name, value


class HeaderLines:
    """What header lines parse to, remembered for lines up to ``max_line_bytes``, at most ``max_entries``."""

    def __init__(self, max_entries: int = 1024, max_line_bytes: int = 256):
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        self._known: BoundedMemo[bytes, ParsedHeader | None] = BoundedMemo(
            plain_header, max_entries, keep=lambda parsed: parsed is not None)
        self._max_line_bytes = max_line_bytes

    def __len__(self) -> int:
        return len(self._known)

    def parse(self, line: bytes) -> ParsedHeader | None:
        """``plain_header(line)``, from the table when the line was seen before (None: Twisted must parse it)."""
        return self._known[line] if len(line) <= self._max_line_bytes else None


# The process's table, shared by every connection of every listener (the lines repeat across clients).
HEADER_LINES = HeaderLines()
