"""The data layer: an instrumented adbapi pool, SQL dialects, migrations and the stores' transactions."""
