"""Account input rules: usernames and passwords accepted at registration and considered at login."""

from __future__ import annotations

import pytest

from tenantsvc.core.accounts import check_credentials, could_be_credentials
from tenantsvc.core.validation import ValidationFailed


@pytest.mark.parametrize("username", ["abc", "Alice_1.b-c", "x" * 32, "___", "A.B"])
def test_usernames_of_3_to_32_plain_characters_are_accepted(username):
    assert check_credentials(username, "password1") == (username, "password1")


@pytest.mark.parametrize("username", ["ab", "x" * 33, "bob smith", "bob@example", "b\u00f6b", "bob\n", "", None, 7])
def test_other_usernames_are_refused_on_the_username_field(username):
    with pytest.raises(ValidationFailed) as caught:
        check_credentials(username, "password1")
    assert set(caught.value.errors) == {"username"}


@pytest.mark.parametrize("password", ["12345678", "x" * 1024, "pass phrase with spaces", "\u00e9" * 8])
def test_passwords_of_8_to_1024_characters_are_accepted(password):
    assert check_credentials("alice", password) == ("alice", password)


@pytest.mark.parametrize("password", ["1234567", "x" * 1025, "", None, b"password1"])
def test_other_passwords_are_refused_on_the_password_field(password):
    with pytest.raises(ValidationFailed) as caught:
        check_credentials("alice", password)
    assert set(caught.value.errors) == {"password"}


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(ValidationFailed) as caught:
        check_credentials("a", "short")
    assert set(caught.value.errors) == {"username", "password"}


def test_a_login_that_no_account_could_match_needs_no_hashing():
    assert could_be_credentials("alice", "password1")
    assert not could_be_credentials("a", "password1")
    assert not could_be_credentials("alice", "x" * 5000)
    assert not could_be_credentials(None, None)
