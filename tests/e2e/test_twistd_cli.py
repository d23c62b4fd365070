"""The ``twistd`` command line: the plugin is listed, its options documented, bad configuration fails in one line."""

from __future__ import annotations

import pytest

from tests.support.tenantsvc_process import run_twistd, service_env

pytestmark = pytest.mark.e2e


def test_twistd_lists_the_tenantsvc_plugin(tmp_path):
    result = run_twistd(["--help"], service_env(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert any(line.split()[:1] == ["tenantsvc"] for line in result.stdout.splitlines()), result.stdout


def test_twistd_tenantsvc_help_documents_its_options(tmp_path):
    result = run_twistd(["tenantsvc", "--help"], service_env(), tmp_path)
    assert result.returncode == 0, result.stderr
    for option in ("--listen=", "--ops-listen=", "--role=", "--demo"):
        assert option in result.stdout, result.stdout
    assert "DATABASE_URL" in result.stdout


def test_an_unknown_role_is_a_usage_error(tmp_path):
    result = run_twistd(["-n", "--pidfile=", "tenantsvc", "--role", "nonsense"], service_env(), tmp_path)
    assert result.returncode != 0
    assert "--role must be one of all, web, worker_odds, worker_settlement" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(("variable", "value"), [
    ("DB_WEB_POOL_MAX", "0"),
    ("DB_STATEMENT_TIMEOUT", "abc"),
    ("REDIS_URL", "ftp://x"),
    ("DATABASE_URL", "mysql://x"),
    ("ADMIN_TOKEN", "short"),
    ("REACTOR_LAG_READY_THRESHOLD", "0"),
    ("REACTOR_LAG_READY_THRESHOLD", "soon"),
    ("REACTOR_LAG_READY_RECOVERY", "-1"),
    ("HEALTH_PROBE_CACHE_SECONDS", "often"),
    ("OPS_LISTEN", "tcp:metrics"),
    ("OPS_LISTEN", "http:9091"),
    ("OPS_TOKEN", "short"),
    ("RATE_LIMIT_READ_CLIENT", "lots"),
    ("RATE_LIMIT_LOGIN_CLIENT", "0/1"),  # the old name of RATE_LIMIT_AUTH_CLIENT, named as it was set
])
def test_a_bad_setting_stops_start_up_with_one_line_naming_it(tmp_path, variable, value):
    result = run_twistd(["-n", "--pidfile=", "tenantsvc", "--listen", "tcp:0:interface=127.0.0.1"],
                        service_env(**{variable: value}), tmp_path, timeout_s=30)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"tenantsvc: configuration error: {variable} ")
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "var").exists(), "nothing may be created before the configuration is valid"


@pytest.mark.parametrize("role", ["worker_odds", "worker_settlement"])
def test_a_worker_role_without_a_feed_key_refuses_to_start_with_one_line(tmp_path, role):
    result = run_twistd(["-n", "--pidfile=", "tenantsvc", "--role", role], service_env(), tmp_path, timeout_s=30)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"tenantsvc: configuration error: GOALSERVE_API_KEY must be set for --role {role} "
        "(or run with --demo for the bundled sample feed)"]


def test_a_bad_ops_listen_option_stops_start_up_with_one_line_naming_it(tmp_path):
    result = run_twistd(["-n", "--pidfile=", "tenantsvc", "--listen", "tcp:0:interface=127.0.0.1",
                         "--ops-listen", "tcp:port=ninety"], service_env(), tmp_path, timeout_s=30)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("tenantsvc: configuration error: --ops-listen must be a Twisted endpoint string "), line
