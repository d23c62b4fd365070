"""A test-only twistd launcher: twistd plus a SIGUSR2 handler that blocks the reactor thread on purpose.

The reactor-lag end-to-end test needs a real ``twistd tenantsvc`` whose reactor is held by a blocking
call. Production code has no such hook: only a process started through this module (``LAUNCHER``, run as
``python -m tests.e2e.reactor_blocker <twistd arguments>``) has it. It installs the default reactor (the
one twistd would pick), makes SIGUSR2 schedule ``time.sleep(TENANTSVC_TEST_BLOCK_SECONDS)`` on the reactor
thread, and hands over to twistd's own entry point. SIGUSR2 is free: twistd uses it only with ``--debug``.
"""

from __future__ import annotations

import os
import signal
import sys
import time

LAUNCHER = [sys.executable, "-m", "tests.e2e.reactor_blocker"]
BLOCK_SECONDS_VARIABLE = "TENANTSVC_TEST_BLOCK_SECONDS"


def install_blocker(block_s: float) -> None:
    """Make SIGUSR2 block the reactor thread for ``block_s`` seconds (once per signal)."""
    from twisted.internet import reactor

    def block() -> None:
        time.sleep(block_s)  # the point of this module: hold the reactor thread

    signal.signal(signal.SIGUSR2, lambda signum, frame: reactor.callFromThread(block))


def main() -> None:
    """Install the blocker, then run twistd with this process's arguments."""
    install_blocker(float(os.environ[BLOCK_SECONDS_VARIABLE]))
    from twisted.scripts.twistd import run

    sys.argv[0] = "twistd"
    run()


if __name__ == "__main__":
    main()
