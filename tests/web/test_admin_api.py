"""The admin API over HTTP: bearer auth, tenant creation and listing, theme read/save, wallet credits.

Every request goes through the real root resource and Klein app (``tests.support.web_harness``), and
what the API claims to have written is checked in the database.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tenantsvc.adapters.db import tenant_store
from tenantsvc.adapters.db.pool import Txn
from tests.support.web_harness import ADMIN_TOKEN, WebHarness
from tests.web.theme_samples import CUSTOM_THEME, DEFAULT_THEME

TENANTS = "/admin/api/tenants"
ACME_THEME = "/admin/api/tenants/acme/theme"
ALICE_CREDIT = "/admin/api/tenants/acme/users/alice/credit"
ADMIN_ROUTES = [("POST", TENANTS), ("GET", TENANTS), ("GET", ACME_THEME), ("PUT", ACME_THEME), ("POST", ALICE_CREDIT)]
ROUTE_IDS = [f"{method} {path}" for method, path in ADMIN_ROUTES]
SLUG_PATTERN_MESSAGE = "must be 3-63 lowercase letters, digits or hyphens, not starting or ending with a hyphen"
CREDIT = {"amount_cents": 5000, "reason": "goodwill"}
OPENING_BALANCE = 100_000


def validation_error(fields: dict[str, str]) -> dict[str, Any]:
    """The 422 body for exactly these per-field messages."""
    return {"error": "validation_failed", "message": "some fields are invalid", "fields": fields}


def body_for(method: str) -> dict[str, Any] | None:
    """A well-formed JSON body for an admin route using ``method`` (None for GET)."""
    return None if method == "GET" else {"slug": "acme", "name": "Acme"}


# --- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES, ids=ROUTE_IDS)
def test_every_admin_route_is_503_when_no_admin_token_is_configured(make_harness, method, path):
    harness = make_harness(admin_token=None)
    response = harness.request(method, path, json=body_for(method),
                               headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status == 503
    assert response.json() == {"error": "admin_disabled",
                               "message": "the admin API is disabled: set ADMIN_TOKEN to enable it"}


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("authorization", [
    None, "Bearer wrong-token-0123456789", f"Basic {ADMIN_TOKEN}", f"Bearer {ADMIN_TOKEN[:-1]}", "Bearer",
], ids=["missing", "wrong-token", "wrong-scheme", "token-prefix", "empty-bearer"])
def test_admin_routes_refuse_a_missing_or_wrong_bearer_token_with_401(harness, method, path, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = harness.request(method, path, json=body_for(method), headers=headers)
    assert response.status == 401
    assert response.header("WWW-Authenticate") == 'Bearer realm="tenantsvc-admin"'
    assert response.json() == {"error": "unauthorized", "message": "a valid admin bearer token is required"}


def test_an_unauthorized_create_writes_nothing(harness):
    harness.request("POST", TENANTS, json={"slug": "acme", "name": "Acme"},
                    headers={"Authorization": "Bearer wrong-token-0123456789"})
    assert harness.run_interaction(tenant_store.list_tenants_txn) == []


def test_authentication_is_checked_before_the_body_is_parsed(harness):
    response = harness.request("POST", TENANTS, body=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status == 401


# --- tenants --------------------------------------------------------------------------------------


def test_create_tenant_answers_201_with_the_tenant_and_its_location(harness):
    response = harness.admin("POST", TENANTS, json={"slug": "acme", "name": "  Acme Bets  "})
    assert response.status == 201
    assert response.header("Location") == "/admin/api/tenants/acme"
    body = response.json()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body.pop("created_at"))
    assert body == {"slug": "acme", "name": "Acme Bets", "is_active": True,
                    "default_user_balance_cents": OPENING_BALANCE}
    assert [t["slug"] for t in harness.run_interaction(tenant_store.list_tenants_txn)] == ["acme"]


def test_creating_an_existing_slug_is_409(harness):
    harness.create_tenant("acme")
    response = harness.admin("POST", TENANTS, json={"slug": "acme", "name": "Another Acme"})
    assert response.status == 409
    assert response.json() == {"error": "tenant_exists", "message": "a tenant with slug 'acme' already exists"}
    assert [t["name"] for t in harness.run_interaction(tenant_store.list_tenants_txn)] == ["Acme"]


@pytest.mark.parametrize(("payload", "fields"), [
    ({"slug": "Acme", "name": "Acme"}, {"slug": SLUG_PATTERN_MESSAGE}),
    ({"slug": "admin", "name": "Acme"}, {"slug": "is a reserved word"}),
    ({"slug": "metrics", "name": "Acme"}, {"slug": "is a reserved word"}),
    ({"slug": "ab", "name": "Acme"}, {"slug": SLUG_PATTERN_MESSAGE}),
    ({"slug": "-acme", "name": "Acme"}, {"slug": SLUG_PATTERN_MESSAGE}),
    ({"slug": "acme-", "name": "Acme"}, {"slug": SLUG_PATTERN_MESSAGE}),
    ({"slug": "a" * 64, "name": "Acme"}, {"slug": SLUG_PATTERN_MESSAGE}),
    ({"slug": "ac me", "name": "Acme"}, {"slug": SLUG_PATTERN_MESSAGE}),
    ({"slug": 42, "name": "Acme"}, {"slug": "must be a string"}),
    ({"name": "Acme"}, {"slug": "must be a string"}),
    ({"slug": "acme"}, {"name": "must be a string"}),
    ({"slug": "acme", "name": None}, {"name": "must be a string"}),
    ({"slug": "acme", "name": "   "}, {"name": "must be 1 to 100 characters"}),
    ({"slug": "acme", "name": "x" * 101}, {"name": "must be 1 to 100 characters"}),
    ({"slug": "acme", "name": "Acme\nBets"}, {"name": "must not contain control characters"}),
    ({"slug": "ACME", "name": ""}, {"slug": SLUG_PATTERN_MESSAGE, "name": "must be 1 to 100 characters"}),
    ({"slug": "acme", "name": "Acme", "owner": "bob"}, {"owner": "unknown field"}),
], ids=["uppercase", "reserved-admin", "reserved-metrics", "too-short", "leading-hyphen", "trailing-hyphen",
        "too-long", "space", "not-a-string", "slug-missing", "name-missing", "name-null", "name-blank",
        "name-too-long", "name-control-char", "both-invalid", "unknown-field"])
def test_create_tenant_reports_each_invalid_field_with_422(harness, payload, fields):
    response = harness.admin("POST", TENANTS, json=payload)
    assert response.status == 422
    assert response.json() == validation_error(fields)
    assert harness.run_interaction(tenant_store.list_tenants_txn) == []


def test_list_tenants_returns_every_tenant_oldest_first(harness):
    assert harness.admin("GET", TENANTS).json() == {"tenants": []}
    created = [harness.create_tenant("zeta", "Zeta"), harness.create_tenant("acme", "Acme")]
    response = harness.admin("GET", TENANTS)
    assert response.status == 200
    assert response.json() == {"tenants": created}


# --- themes ---------------------------------------------------------------------------------------


@pytest.fixture
def acme(harness: WebHarness) -> WebHarness:
    """The harness with tenant ``acme`` created through the admin API."""
    harness.create_tenant("acme", "Acme")
    return harness


def test_a_tenant_that_never_saved_a_theme_reads_the_default_palette(acme):
    response = acme.admin("GET", ACME_THEME)
    assert response.status == 200
    assert response.json() == DEFAULT_THEME


def test_a_saved_theme_round_trips_with_camel_case_keys_and_normalised_colours(acme):
    expected = {**CUSTOM_THEME, "primaryColor": "#FF0066", "textColor": "#123ABC"}
    saved = acme.admin("PUT", ACME_THEME, json=CUSTOM_THEME)
    assert saved.status == 200
    assert saved.json() == expected
    assert acme.admin("GET", ACME_THEME).json() == expected
    assert acme.run_interaction(tenant_store.load_theme_txn, "acme").to_wire() == expected


def test_saving_a_partial_theme_replaces_the_rest_with_defaults(acme):
    acme.admin("PUT", ACME_THEME, json=CUSTOM_THEME)
    response = acme.admin("PUT", ACME_THEME, json={"primaryColor": "#ABCDEF"})
    assert response.json() == {**DEFAULT_THEME, "primaryColor": "#ABCDEF"}
    assert acme.admin("GET", ACME_THEME).json() == {**DEFAULT_THEME, "primaryColor": "#ABCDEF"}


URL_MESSAGE = "must be an http(s) URL without spaces, quotes, parentheses or backslashes, or empty"
COLOUR_MESSAGE = "must be a colour in the form #RRGGBB"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("primaryColor", "#12345", COLOUR_MESSAGE),
    ("secondaryColor", "red", COLOUR_MESSAGE),
    ("accentColor", "#GGGGGG", COLOUR_MESSAGE),
    ("backgroundColor", "#1234567", COLOUR_MESSAGE),
    ("textColor", 0xFFFFFF, COLOUR_MESSAGE),
    ("layoutStyle", "fancy", "must be one of modern, classic, compact, wide, minimal"),
    ("buttonStyle", "round", "must be one of rounded, sharp, minimal"),
    ("cardStyle", "SHADOW", "must be one of shadow, border, minimal, glow"),
    ("logoType", None, "must be one of default, text, image, custom"),
    ("logoUrl", "javascript:alert(1)", URL_MESSAGE),
    ("logoUrl", "https://cdn.example.com/a logo.png", URL_MESSAGE),
    ("logoUrl", 'https://cdn.example.com/a".png', URL_MESSAGE),
    ("logoUrl", "https://cdn.example.com/a'.png", URL_MESSAGE),
    ("logoUrl", "https://cdn.example.com/a).png", URL_MESSAGE),
    ("logoUrl", "ftp://cdn.example.com/logo.png", URL_MESSAGE),
    ("logoUrl", "https://" + "a" * 2050, "must be at most 2048 characters"),
    ("sportsbookName", "x" * 101, "must be 1 to 100 characters"),
    ("sportsbookName", "", "must be 1 to 100 characters"),
    ("fontFamily", "Arial; } body { color: red", "must be 1-100 characters of letters, digits, spaces, commas, "
                                                  "hyphens and balanced quotes"),
    ("fontFamily", "'Open Sans, Arial", "must be 1-100 characters of letters, digits, spaces, commas, "
                                        "hyphens and balanced quotes"),
    ("primary_color", "#FFFFFF", "unknown field"),
])
def test_an_invalid_theme_field_is_422_and_leaves_the_saved_theme_alone(acme, field, value, message):
    acme.admin("PUT", ACME_THEME, json=CUSTOM_THEME)
    before = acme.admin("GET", ACME_THEME).json()
    response = acme.admin("PUT", ACME_THEME, json={**CUSTOM_THEME, field: value})
    assert response.status == 422
    assert response.json() == validation_error({field: message})
    assert acme.admin("GET", ACME_THEME).json() == before


def test_every_invalid_theme_field_is_reported_at_once(acme):
    response = acme.admin("PUT", ACME_THEME, json={"primaryColor": "blue", "logoUrl": "javascript:x",
                                                   "layoutStyle": "fancy"})
    assert response.status == 422
    assert set(response.json()["fields"]) == {"primaryColor", "logoUrl", "layoutStyle"}


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_the_theme_of_an_unknown_tenant_is_404(harness, method):
    response = harness.admin(method, "/admin/api/tenants/ghost/theme", json=None if method == "GET" else CUSTOM_THEME)
    assert response.status == 404
    assert response.json() == {"error": "not_found", "message": "no tenant 'ghost'"}


# --- wallet credits -------------------------------------------------------------------------------


def ledger_rows_txn(txn: Txn, username: str) -> list[dict[str, Any]]:
    """Every ledger row of ``username``, oldest first."""
    return txn.all(
        "SELECT l.id, l.kind, l.amount_cents, l.balance_before_cents, l.balance_after_cents, l.reason,"
        " l.idempotency_key FROM ledger l JOIN users u ON u.id = l.user_id WHERE u.username = %s ORDER BY l.id",
        (username,),
    )


def balance_txn(txn: Txn, username: str) -> int:
    """The wallet balance of ``username``."""
    row = txn.one("SELECT w.balance_cents FROM wallets w JOIN users u ON u.id = w.user_id WHERE u.username = %s",
                  (username,))
    assert row is not None
    return int(row["balance_cents"])


@pytest.fixture
def alice(acme: WebHarness) -> WebHarness:
    """The harness with user ``alice`` (opening balance 100000 cents) in tenant ``acme``."""
    acme.run_interaction(tenant_store.create_user_txn, "acme", "alice", "not-a-real-hash")
    return acme


def test_credit_returns_the_new_balance_and_writes_one_ledger_row(alice):
    response = alice.admin("POST", ALICE_CREDIT, json=CREDIT)
    assert response.status == 200
    body = response.json()
    assert body == {"username": "alice", "amount_cents": 5000, "balance_cents": OPENING_BALANCE + 5000,
                    "ledger_id": body["ledger_id"], "replayed": False}
    assert alice.run_interaction(balance_txn, "alice") == OPENING_BALANCE + 5000
    opening, credit = alice.run_interaction(ledger_rows_txn, "alice")
    assert opening["kind"] == "opening_balance"
    assert credit == {"id": body["ledger_id"], "kind": "admin_credit", "amount_cents": 5000,
                      "balance_before_cents": OPENING_BALANCE, "balance_after_cents": OPENING_BALANCE + 5000,
                      "reason": "goodwill", "idempotency_key": None}


def test_a_negative_amount_debits_the_wallet(alice):
    response = alice.admin("POST", ALICE_CREDIT, json={"amount_cents": -2500, "reason": "correction"})
    assert response.status == 200
    assert response.json()["balance_cents"] == OPENING_BALANCE - 2500
    assert alice.run_interaction(ledger_rows_txn, "alice")[-1]["kind"] == "admin_debit"


def test_a_debit_beyond_the_balance_is_409_and_changes_nothing(alice):
    response = alice.admin("POST", ALICE_CREDIT, json={"amount_cents": -(OPENING_BALANCE + 1), "reason": "oops"})
    assert response.status == 409
    assert response.json() == {"error": "insufficient_funds", "message": "the wallet balance cannot go below zero"}
    assert alice.run_interaction(balance_txn, "alice") == OPENING_BALANCE
    assert [row["kind"] for row in alice.run_interaction(ledger_rows_txn, "alice")] == ["opening_balance"]


def test_replaying_an_idempotency_key_returns_the_first_result_without_paying_twice(alice):
    first = alice.admin("POST", ALICE_CREDIT, json=CREDIT, headers={"Idempotency-Key": "credit-7f3a"}).json()
    again = alice.admin("POST", ALICE_CREDIT, json=CREDIT, headers={"Idempotency-Key": "credit-7f3a"})
    assert again.status == 200
    assert again.json() == {**first, "replayed": True}
    assert alice.run_interaction(balance_txn, "alice") == OPENING_BALANCE + 5000
    kinds = [row["kind"] for row in alice.run_interaction(ledger_rows_txn, "alice")]
    assert kinds == ["opening_balance", "admin_credit"]


def test_different_idempotency_keys_are_different_credits(alice):
    alice.admin("POST", ALICE_CREDIT, json=CREDIT, headers={"Idempotency-Key": "k-1"})
    alice.admin("POST", ALICE_CREDIT, json=CREDIT, headers={"Idempotency-Key": "k-2"})
    assert alice.run_interaction(balance_txn, "alice") == OPENING_BALANCE + 10_000


def test_reusing_an_idempotency_key_for_another_amount_is_422(alice):
    alice.admin("POST", ALICE_CREDIT, json=CREDIT, headers={"Idempotency-Key": "credit-7f3a"})
    response = alice.admin("POST", ALICE_CREDIT, json={**CREDIT, "amount_cents": 9999},
                           headers={"Idempotency-Key": "credit-7f3a"})
    assert response.status == 422
    assert response.json() == validation_error({"Idempotency-Key": "was already used for a different request"})
    assert alice.run_interaction(balance_txn, "alice") == OPENING_BALANCE + 5000


@pytest.mark.parametrize("key", ["has space", "x" * 129, "caf\u00e9"], ids=["space", "too-long", "non-ascii"])
def test_a_malformed_idempotency_key_is_400(alice, key):
    response = alice.admin("POST", ALICE_CREDIT, json=CREDIT, headers={"Idempotency-Key": key})
    assert response.status == 400
    assert response.json()["error"] == "bad_idempotency_key"
    assert alice.run_interaction(balance_txn, "alice") == OPENING_BALANCE


@pytest.mark.parametrize(("payload", "fields"), [
    ({"amount_cents": True, "reason": "x"}, {"amount_cents": "must be a whole number of cents"}),
    ({"amount_cents": 50.0, "reason": "x"}, {"amount_cents": "must be a whole number of cents"}),
    ({"amount_cents": "5000", "reason": "x"}, {"amount_cents": "must be a whole number of cents"}),
    ({"reason": "x"}, {"amount_cents": "must be a whole number of cents"}),
    ({"amount_cents": 0, "reason": "x"}, {"amount_cents": "must be non-zero and at most 100000000000 in size"}),
    ({"amount_cents": 10**11 + 1, "reason": "x"},
     {"amount_cents": "must be non-zero and at most 100000000000 in size"}),
    ({"amount_cents": 5000}, {"reason": "must be a string"}),
    ({"amount_cents": 5000, "reason": "x", "currency": "EUR"}, {"currency": "unknown field"}),
], ids=["bool", "float", "string", "missing", "zero", "too-large", "reason-missing", "unknown-field"])
def test_an_invalid_credit_is_422_and_changes_nothing(alice, payload, fields):
    response = alice.admin("POST", ALICE_CREDIT, json=payload)
    assert response.status == 422
    assert response.json() == validation_error(fields)
    assert alice.run_interaction(balance_txn, "alice") == OPENING_BALANCE


def test_crediting_an_unknown_user_is_404(alice):
    response = alice.admin("POST", "/admin/api/tenants/acme/users/bob/credit", json=CREDIT)
    assert response.status == 404
    assert response.json() == {"error": "not_found", "message": "no user 'bob' in tenant 'acme'"}


def test_a_user_of_another_tenant_cannot_be_credited_through_this_one(alice):
    alice.create_tenant("beta")
    response = alice.admin("POST", "/admin/api/tenants/beta/users/alice/credit", json=CREDIT)
    assert response.status == 404
    assert alice.run_interaction(balance_txn, "alice") == OPENING_BALANCE
