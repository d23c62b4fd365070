"""``twistd tenantsvc``: command-line options and ``makeService``, the only place the reactor is imported."""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from twisted.python import usage

from tenantsvc.config import ENVIRONMENT_VARIABLES, ROLES, ConfigError, load_settings

if TYPE_CHECKING:
    from tenantsvc.composition.tree import OrderedMultiService


class Options(usage.Options):
    """Options of ``twistd tenantsvc``; every other setting comes from the environment (see README)."""

    synopsis = "[--listen ENDPOINT] [--ops-listen ENDPOINT] [--role all|web|worker_odds|worker_settlement] [--demo]"
    longdesc = (
        "Runs the tenantsvc API and/or its workers. Configuration comes from environment variables ("
        + ", ".join(ENVIRONMENT_VARIABLES)
        + "; see the README for each); these options override them. With no DATABASE_URL a SQLite file "
        "under ./var/ is used."
    )
    optParameters = [
        ["listen", "l", None, "Twisted endpoint string to serve HTTP on (default tcp:$PORT, else tcp:8080)."],
        ["ops-listen", None, None, "Twisted endpoint string of a separate operations listener serving /metrics, "
         "/health/detailed, /healthz and /readyz (default $OPS_LISTEN; unset: the main listener serves them)."],
        ["role", "r", None, f"Which parts to run: {', '.join(ROLES)} (default $PROCESS_TYPE, else all)."],
    ]
    optFlags = [
        ["demo", None, "Create the tenant 'demo' with a non-default theme if it is missing."],
    ]

    def postOptions(self) -> None:
        """Check the role early so ``--role nonsense`` is a usage error."""
        if self["role"] is not None and self["role"] not in ROLES:
            raise usage.UsageError(f"--role must be one of {', '.join(ROLES)}")


def makeService(options: Options) -> OrderedMultiService:  # noqa: N802 - twistd's name
    """Validate settings (one clear line and exit 2 on error) and build the service tree."""
    try:
        settings = load_settings(os.environ, role=options["role"], listen=options["listen"], demo=options["demo"],
                                 ops_listen=options["ops-listen"])
    except ConfigError as error:
        sys.stderr.write(f"tenantsvc: configuration error: {error}\n")
        raise SystemExit(2)
    from twisted.internet import reactor

    from tenantsvc.service import build_service

    reactor.callWhenRunning(stop_on_sigterm_with_exit_status_0, reactor)
    return build_service(settings, reactor).service


def stop_on_sigterm_with_exit_status_0(reactor: Any) -> None:
    """Make SIGTERM a graceful stop after which twistd exits with status 0.

    SIGTERM is how Fly.io and every supervisor ask for the drain; twistd's own handler runs the same
    clean shutdown but then re-raises the signal, so the process dies "killed by SIGTERM" (status 143)
    and looks like a crash. Installed once the reactor runs, replacing twistd's handler; like it, the
    handler only schedules ``reactor.stop`` on the reactor thread.
    """
    from twisted.internet.error import ReactorNotRunning

    from eliot import log_message

    def stop() -> None:
        log_message("tenantsvc:shutdown", signal="SIGTERM")
        try:
            reactor.stop()
        except ReactorNotRunning:  # a second SIGTERM during the drain changes nothing
            pass

    signal.signal(signal.SIGTERM, lambda signum, frame: reactor.callFromThread(stop))
