"""Fixtures for the end-to-end tests: ``twistd -n tenantsvc`` subprocesses (launched by ``tests.support.tenantsvc_process``).

A process still running at teardown is killed; nothing here imports klein, txredisapi or the reactor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Mapping

import pytest

from tests.support.tenantsvc_process import TWISTD, TenantsvcProcess, service_env


@pytest.fixture
def start_tenantsvc(tmp_path: Path) -> Iterator[Callable[..., TenantsvcProcess]]:
    """Start ``twistd -n tenantsvc *args`` in a fresh directory: ``start_tenantsvc(*args, env=…, ready=True,
    launcher=TWISTD)``."""
    started: list[TenantsvcProcess] = []

    def start(*args: str, env: Mapping[str, str] | None = None, ready: bool = True,
              launcher: list[str] = TWISTD) -> TenantsvcProcess:
        """Start one process (and, unless ``ready`` is False, wait until it answers ``/readyz`` with 200)."""
        workdir = tmp_path / f"service-{len(started)}"
        workdir.mkdir()
        service = TenantsvcProcess(workdir, list(args), env or service_env(), launcher)
        started.append(service)
        if ready:
            service.wait_until_ready()
        return service

    yield start
    for service in started:
        service.kill()


@pytest.fixture(scope="module")
def demo_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TenantsvcProcess]:
    """One ready ``tenantsvc --demo`` (role all, embedded SQLite) shared by a module's read-mostly tests."""
    service = TenantsvcProcess(tmp_path_factory.mktemp("demo"), ["--demo", "--listen", "tcp:0:interface=127.0.0.1"],
                               service_env())
    try:
        service.wait_until_ready()
        yield service
    finally:
        service.kill()
