"""The shape of Goalserve documents, shared by the odds and results parsers.

Goalserve's JSON comes from XML: wherever a list has one element it may be a single object instead, and
keys may carry the XML-attribute ``@`` prefix. These helpers read either form, and ``load_feed_document``
refuses bodies that are not JSON objects or that announce an error instead of data.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping, TypeVar

from tenantsvc.core.feed_errors import FeedMalformed, FeedRejected

T = TypeVar("T")

# Words in a top-level ``message`` that mean the feed is telling us about a failure, not sending data.
REJECT_MESSAGE_WORDS: tuple[str, ...] = ("error", "failed", "timeout", "too many requests", "rate limit")
# Home and away sides of a match, in the order the shapes are tried.
TEAM_KEY_PAIRS: tuple[tuple[str, str], ...] = (
    ("localteam", "visitorteam"), ("localteam", "awayteam"), ("player_1", "player_2"),
)


def load_feed_document(body: bytes | str) -> dict[str, Any]:
    """Decode a feed body into its top-level JSON object, refusing error bodies.

    Raises ``FeedMalformed`` when the body is not JSON or not an object, and ``FeedRejected`` when the
    object carries a ``status`` other than "200" or a ``message`` that reports a failure.
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise FeedMalformed(f"feed body is not JSON: {type(exc).__name__}") from None
    if not isinstance(document, dict):
        raise FeedMalformed(f"feed body is a JSON {type(document).__name__}, not an object")
    _reject_error_document(document)
    return document


def _reject_error_document(document: Mapping[str, Any]) -> None:
    """Raise ``FeedRejected`` if the top-level ``status`` or ``message`` says the feed failed."""
    status = feed_field(document, "status")
    if status is not None and str(status).strip() != "200":
        raise FeedRejected(f"feed status {excerpt(status)!r}: {excerpt(feed_field(document, 'message'))}")
    message = feed_field(document, "message")
    if message is not None and any(word in str(message).casefold() for word in REJECT_MESSAGE_WORDS):
        raise FeedRejected(f"feed reported a failure: {excerpt(message)}")


def excerpt(value: object, limit: int = 120) -> str:
    """A short printable excerpt of a feed value for an error message."""
    return "" if value is None else str(value)[:limit]


def feed_field(obj: Mapping[str, Any], key: str) -> Any:
    """``obj[key]``, else the XML-attribute form ``obj["@" + key]``, else None."""
    value = obj.get(key)
    return obj.get("@" + key) if value is None else value


def feed_text(value: object) -> str | None:
    """A feed scalar as stripped text (strings and integers only); None when absent or blank."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text or None


def is_feed_true(value: object) -> bool:
    """True for the feed's spelling of yes: ``"True"``, ``"true"`` or JSON ``true``."""
    return value is True or (isinstance(value, str) and value.strip().casefold() == "true")


def one_or_many(value: object) -> list[object]:
    """The feed's "one object or a list" as a list; absent or an empty XML element (``""``) is ``[]``."""
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list) else [value]


def unwrap(value: object, inner_key: str) -> object:
    """``value[inner_key]`` when ``value`` is an XML-style wrapper object (``{"match": …}``), else ``value``."""
    if isinstance(value, dict):
        inner = feed_field(value, inner_key)
        if isinstance(inner, (dict, list)):
            return inner
    return value


def feed_objects(value: object, what: str) -> list[dict[str, Any]]:
    """The objects of a one-or-list container whose shape is fixed; ``FeedMalformed`` on anything else."""
    items = one_or_many(value)
    for item in items:
        if not isinstance(item, dict):
            raise FeedMalformed(f"a {what} is a JSON {type(item).__name__}, not an object")
    return items  # type: ignore[return-value]


def loose_objects(value: object) -> list[dict[str, Any]]:
    """The objects of a one-or-list container whose content varies; anything that is not an object is ignored."""
    return [item for item in one_or_many(value) if isinstance(item, dict)]


def category_objects(scores: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The categories (leagues) of ``scores``: ``categories`` or ``category``, one or a list."""
    categories = feed_field(scores, "categories")
    if categories is None:
        categories = feed_field(scores, "category")
    return feed_objects(unwrap(categories, "category"), "category")


def match_objects(category: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The matches of a category: ``matches`` (a list, one object or ``{match: …}``) or ``match``."""
    matches = feed_field(category, "matches")
    if matches is None:
        matches = feed_field(category, "match")
    return feed_objects(unwrap(matches, "match"), "match")


def match_sides(match: Mapping[str, Any]) -> tuple[object, object] | None:
    """The (home, away) team values of a match: a known key pair, or a two-entry ``player`` list."""
    for home_key, away_key in TEAM_KEY_PAIRS:
        home, away = feed_field(match, home_key), feed_field(match, away_key)
        if home is not None and away is not None:
            return home, away
    players = one_or_many(feed_field(match, "player"))
    if len(players) == 2:
        return players[0], players[1]
    return None


# --- odds document ------------------------------------------------------------------------------------


def first_of_each(items: Iterable[T], key: Callable[[T], str]) -> tuple[T, ...]:
    """``items`` without repeats of ``key`` (the first one wins), in order: the feed sometimes lists a match twice."""
    by_key: dict[str, T] = {}
    for item in items:
        by_key.setdefault(key(item), item)
    return tuple(by_key.values())
