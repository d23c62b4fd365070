"""Importing the web and end-to-end fixture modules must not choose the reactor (no klein, txredisapi, reactor)."""

from __future__ import annotations

import pytest

from tests.support.web_harness import modules_loaded_by_importing


@pytest.mark.parametrize("module", ["tests.web.conftest", "tests.e2e.conftest", "tests.integration.conftest",
                                    "tests.support.web_harness"])
def test_importing_a_fixture_module_leaves_the_reactor_unchosen(module):
    assert modules_loaded_by_importing(module, ["klein", "txredisapi", "twisted.internet.reactor"]) == []
