"""Pure domain logic: no Twisted, no I/O. Time arrives as ``now``; randomness as an injected callable."""
