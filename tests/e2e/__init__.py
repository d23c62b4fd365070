"""End-to-end tests: real ``twistd -n tenantsvc`` processes driven over loopback HTTP."""
