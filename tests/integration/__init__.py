"""Tests against real Postgres, PgBouncer and Redis servers started by the session fixtures."""
