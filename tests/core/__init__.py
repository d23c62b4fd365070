"""Unit and property tests of the pure ``tenantsvc.core`` logic and of configuration parsing."""
