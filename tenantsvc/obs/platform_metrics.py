"""Process, platform and build metrics on the injected registry (issue 13).

prometheus_client registers these on its global registry by default; tenantsvc keeps every metric on
the registry it injects (DESIGN §3), so they are registered here explicitly:

- ``process_*`` (CPU seconds, resident and virtual memory, open and maximum file descriptors, start
  time), read from ``/proc`` at scrape time by ``ProcessCollector``;
- ``python_info`` (``PlatformCollector``) and ``python_gc_*`` per generation (``GCCollector``), plus
  ``python_gc_frozen_objects``: the objects ``gc.freeze()`` moved out of the collector's sight after start-up;
- ``tenantsvc_build_info{version, role, environment, twisted}``, always 1, to join on or to see a deploy.
"""

from __future__ import annotations

import gc

import twisted
from prometheus_client import CollectorRegistry, GCCollector, Gauge, Info, PlatformCollector, ProcessCollector


def register_platform_metrics(registry: CollectorRegistry, *, version: str, role: str, environment: str) -> None:
    """Register the process, Python and build families on ``registry``."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    Gauge("python_gc_frozen_objects", "Objects in the permanent generation (gc.freeze() after start-up).",
          registry=registry).set_function(gc.get_freeze_count)
    Info("tenantsvc_build", "The running build: version (APP_VERSION), role, environment, Twisted version.",
         registry=registry).info({"version": version, "role": role, "environment": environment,
                                  "twisted": twisted.__version__})
