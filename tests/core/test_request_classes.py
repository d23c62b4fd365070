"""The request-class vocabulary is defined once and every user speaks it."""

from __future__ import annotations

from tenantsvc.core import breaker, rate_limits, request_classes
from tenantsvc.core.request_classes import BACKGROUND, METRIC_ROUTE_CLASSES, PUBLIC, READ, ROUTE_CLASSES, WRITE
from tenantsvc.obs import request_counters


def test_the_breaker_admits_the_route_classes_that_reach_the_db_and_background_work():
    assert breaker.REQUEST_CLASSES == (READ, WRITE, BACKGROUND)
    assert set(ROUTE_CLASSES) - set(breaker.REQUEST_CLASSES) == {PUBLIC}  # public never reaches the DB


def test_every_route_class_has_a_rate_limit_policy_of_its_own_name():
    policies = rate_limits.RateLimitPolicies()
    for route_class in ROUTE_CLASSES:
        assert policies[route_class].endpoint_class == route_class
    assert set(rate_limits.ENDPOINT_CLASSES) == {*ROUTE_CLASSES, rate_limits.AUTH}


def test_the_metrics_label_covers_every_route_class():
    assert request_counters.ROUTE_CLASSES == METRIC_ROUTE_CLASSES
    assert set(ROUTE_CLASSES) < set(METRIC_ROUTE_CLASSES)


def test_the_names_are_the_same_objects_everywhere():
    assert breaker.READ is request_classes.READ and rate_limits.READ is request_classes.READ
    assert rate_limits.PUBLIC is request_classes.PUBLIC and breaker.BACKGROUND is request_classes.BACKGROUND
