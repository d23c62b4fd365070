"""The one vocabulary of request classes: what a piece of work may do to the database, and its metrics label.

Every route declares one class (``web.routing``); it is the ``route_class`` label of the request metrics
(``obs.request_counters``), the DB breaker's admission class (``core.breaker``: a route of class ``read``
runs its interactions through the breaker's ``read`` runner, ``write`` through the ``write`` one) and the
rate-limit endpoint class of the route unless the route names a narrower one (``core.rate_limits`` adds
``auth``: register and login, sized apart from other writes).

- ``public``: never touches the database (the theme routes, the admin breaker switch).
- ``read``: reads; served from cache or refused with 503 while the breaker is open.
- ``write``: state-changing; still admitted under pool pressure, never when the database is down.
- ``background``: work no request waits on (cache refreshes, warmers, feed workers): breaker only.
- ``operational``: health, readiness and metrics endpoints: metrics label only.
- ``none``: a request that matched no route: metrics label only.
"""

from __future__ import annotations

PUBLIC, READ, WRITE = "public", "read", "write"
BACKGROUND = "background"
OPERATIONAL, NO_ROUTE_CLASS = "operational", "none"

ROUTE_CLASSES = (PUBLIC, READ, WRITE)
"""What a route may declare."""
BREAKER_CLASSES = (READ, WRITE, BACKGROUND)
"""What the DB breaker admits or refuses."""
METRIC_ROUTE_CLASSES = (*ROUTE_CLASSES, OPERATIONAL, NO_ROUTE_CLASS)
"""Every value of the ``route_class`` metrics label."""
