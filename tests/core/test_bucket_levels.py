"""Stacked token buckets (a client's bucket under its tenant's ceiling): worked examples on explicit times, and
hypothesis properties: no client ever costs the tenant what its own bucket refused, and the stack never
admits more than any one of its buckets would alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantsvc.core.token_bucket import BucketPolicy, BucketState, levels_decision, take, take_levels

CLIENT = BucketPolicy(capacity=3, refill_per_s=1.0)
TENANT = BucketPolicy(capacity=5, refill_per_s=1.0)
STACK = (CLIENT, TENANT)


class Tenant:
    """One tenant's ceiling and its clients' buckets, spent through ``take_levels`` at explicit times."""

    def __init__(self, client: BucketPolicy = CLIENT, tenant: BucketPolicy = TENANT):
        self.policies = (client, tenant)
        self.clients: dict[str, BucketState | None] = {}
        self.ceiling: BucketState | None = None

    def request(self, client: str, now: float, n: int = 1):
        decision, (mine, ceiling) = take_levels(self.policies, [self.clients.get(client), self.ceiling], now, n)
        self.clients[client], self.ceiling = mine, ceiling
        return decision


def test_a_client_is_refused_by_its_own_bucket_without_spending_the_tenants():
    tenant = Tenant()
    answers = [tenant.request("a", 0.0) for _ in range(5)]
    assert [d.allowed for d in answers] == [True, True, True, False, False]
    assert [d.level for d in answers[3:]] == [0, 0]  # refused by the client level
    assert tenant.ceiling.tokens == 2.0  # only the three admitted requests were spent from the ceiling
    others = [tenant.request("b", 0.0) for _ in range(2)]
    assert all(d.allowed for d in others)  # another client still gets what the tenant has left


def test_the_tenant_ceiling_refuses_when_all_clients_together_reach_it():
    tenant = Tenant()
    for client in ("a", "b"):
        for _ in range(2):
            assert tenant.request(client, 0.0).allowed
    assert tenant.request("c", 0.0).allowed  # the fifth token of the ceiling
    refused = tenant.request("c", 0.0)
    assert not refused.allowed and refused.level == 1 and refused.limit == TENANT.capacity
    assert tenant.clients["c"].tokens == 2.0  # a refusal by the ceiling spends nothing from the client either
    assert refused.retry_after_s == pytest.approx(1.0)


def test_both_levels_refill_with_time():
    tenant = Tenant()
    for _ in range(3):
        tenant.request("a", 0.0)
    assert not tenant.request("a", 0.5).allowed
    assert tenant.request("a", 1.0).allowed  # a token back in the client's bucket; the ceiling had 2 left


def test_a_refusal_waits_for_every_level_that_lacks_tokens():
    policies = (BucketPolicy(3, 1.0), BucketPolicy(5, 0.25))
    refused = levels_decision(policies, [0.5, 0.0], refused=0)
    assert refused.level == 0 and refused.limit == 3
    assert refused.retry_after_s == pytest.approx(4.0)  # the ceiling needs 4 s for one token, the client 0.5 s


def test_an_admission_reports_the_level_with_fewest_tokens_left():
    admitted = levels_decision(STACK, [2.0, 0.4], refused=None)
    assert admitted.allowed and admitted.level == 1 and admitted.remaining == 0
    tie = levels_decision(STACK, [1.0, 1.5], refused=None)
    assert tie.level == 0  # a tie goes to the narrowest bucket


def test_one_level_is_exactly_the_single_bucket():
    state = None
    single = None
    for now in (0.0, 0.0, 0.1, 0.2, 0.2, 3.0):
        stacked, (state,) = take_levels((CLIENT,), [state], now)
        single, single_state = take(CLIENT, single_state if single else None, now)
        assert stacked == single and state == single_state


def test_request_sizes_are_checked_against_every_level():
    with pytest.raises(ValueError):
        take_levels((BucketPolicy(10, 1.0), BucketPolicy(3, 1.0)), [None, None], 0.0, n=4)
    with pytest.raises(ValueError):
        take_levels(STACK, [None], 0.0)


@st.composite
def traffic(draw: st.DrawFn) -> list[tuple[float, str]]:
    """Requests at non-decreasing times, each from one of three clients."""
    gaps = draw(st.lists(st.floats(0.0, 2.0, allow_nan=False), min_size=1, max_size=80))
    clients = draw(st.lists(st.sampled_from("abc"), min_size=len(gaps), max_size=len(gaps)))
    return [(sum(gaps[: i + 1]), client) for i, client in enumerate(clients)]


@given(traffic())
def test_the_ceiling_only_pays_for_admitted_requests(requests):
    stacked = Tenant()
    ceiling_alone = None  # the ceiling on its own, spent only by the requests the stack admitted
    for now, client in requests:
        if stacked.request(client, now).allowed:
            admitted, ceiling_alone = take(TENANT, ceiling_alone, now)
            assert admitted.allowed
        expected = TENANT.capacity if ceiling_alone is None else min(
            TENANT.capacity, ceiling_alone.tokens + (now - ceiling_alone.updated_at) * TENANT.refill_per_s)
        assert stacked.ceiling.tokens == pytest.approx(expected, abs=1e-9)


@given(traffic())
def test_no_client_and_no_tenant_gets_more_than_burst_plus_rate_times_time(requests):
    stacked = Tenant()
    admitted: dict[str, int] = {}
    for now, client in requests:
        if stacked.request(client, now).allowed:
            admitted[client] = admitted.get(client, 0) + 1
        elapsed = now - requests[0][0]
        assert all(count <= CLIENT.capacity + CLIENT.refill_per_s * elapsed + 1e-9 for count in admitted.values())
        assert sum(admitted.values()) <= TENANT.capacity + TENANT.refill_per_s * elapsed + 1e-9
