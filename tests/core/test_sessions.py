"""Session rules: id format, hashing, the stored JSON record and how long a session lives."""

from __future__ import annotations

import base64
import json
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantsvc.core.sessions import (
    SESSION_ID_LENGTH, SessionPolicy, SessionRecord, is_well_formed_session_id, session_hash,
)

RECORD = SessionRecord("acme", 7, "alice", 1_700_000_000.5, False)


@given(st.binary(min_size=32, max_size=32))
def test_every_32_byte_token_is_well_formed(raw):
    token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    assert len(token) == SESSION_ID_LENGTH and is_well_formed_session_id(token)


def test_secrets_token_urlsafe_32_is_well_formed():
    assert all(is_well_formed_session_id(secrets.token_urlsafe(32)) for _ in range(200))


@pytest.mark.parametrize("value", [
    None, 42, b"x" * 43, "", "a" * 42, "a" * 44, "a" * 4096, "a" * 42 + "=", "a" * 42 + "B",  # B has low bits set
    "a" * 41 + "+A", "a" * 41 + "/A", "a" * 41 + " A", "a" * 41 + "\u00e9A", "a" * 41 + "\nA",
])
def test_anything_else_is_malformed(value):
    assert not is_well_formed_session_id(value)


def test_stores_see_only_the_sha256_of_an_id():
    session_id = secrets.token_urlsafe(32)
    hashed = session_hash(session_id)
    assert len(hashed) == 64 and session_id not in hashed and hashed == session_hash(session_id)


def test_records_round_trip_as_json():
    text = RECORD.to_json()
    assert json.loads(text) == {"tenant": "acme", "user_id": 7, "username": "alice",
                                "created_at": 1_700_000_000.5, "remember": False}
    assert SessionRecord.from_json(text) == RECORD
    assert SessionRecord.from_json(text.encode()) == RECORD


@pytest.mark.parametrize("text", [
    None, 17, "", "not json", "[]", "null",
    '{"tenant":"acme","user_id":7,"username":"alice","created_at":1,"remember":false,"admin":true}',
    '{"tenant":"acme","user_id":7,"username":"alice","created_at":1}',
    '{"tenant":"acme","user_id":"7","username":"alice","created_at":1,"remember":false}',
    '{"tenant":"acme","user_id":true,"username":"alice","created_at":1,"remember":false}',
    '{"tenant":"acme","user_id":7,"username":"alice","created_at":"now","remember":false}',
    '{"tenant":"acme","user_id":7,"username":"alice","created_at":1,"remember":1}',
    '{"tenant":"acme","user_id":7,"username":"alice","created_at":1e999,"remember":false}',
    '{"tenant":"acme","user_id":7,"username":"' + "a" * 2000 + '","created_at":1,"remember":false}',
])
def test_anything_but_a_record_we_wrote_is_no_session(text):
    assert SessionRecord.from_json(text) is None


def test_ttl_is_the_idle_period_until_the_absolute_lifetime_cuts_it_short():
    policy = SessionPolicy(idle_ttl_s=3600, remember_ttl_s=86400, absolute_lifetime_s=7 * 86400)
    created = RECORD.created_at
    assert policy.ttl_ms(RECORD, created) == 3_600_000
    remembered = SessionRecord("acme", 7, "alice", created, True)
    assert policy.ttl_ms(remembered, created) == 86_400_000
    six_and_a_half_days = created + 6.5 * 86400
    assert policy.ttl_ms(remembered, six_and_a_half_days) == 43_200_000
    assert policy.ttl_ms(RECORD, created + 7 * 86400) == 0
    assert policy.ttl_ms(RECORD, created + 8 * 86400) < 0


def test_defaults_are_an_hour_a_day_and_a_week():
    assert SessionPolicy() == SessionPolicy(3600.0, 86400.0, 604800.0)


@pytest.mark.parametrize("field", ["idle_ttl_s", "remember_ttl_s", "absolute_lifetime_s"])
def test_policy_refuses_non_positive_durations(field):
    with pytest.raises(ValueError, match=field):
        SessionPolicy(**{field: 0})
