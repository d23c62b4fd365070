"""The parts the composition root (``tenantsvc.service.build_service``) assembles, each built by a function that
returns it: core parts (db, breaker, caches, services), the optional Redis parts, the web parts (root resources
and sites), the feed workers, and the ordered service tree they are started in.
"""
