"""The run store's own tests (tests/unit/test_store_runs.py), run again on PostgreSQL: the same
migrations, events, projection and thread safety on the server the service uses in production."""

import itertools

import pytest

from tests.unit import test_store_runs as on_sqlite

pytestmark = pytest.mark.api

_numbers = itertools.count()

# The fixtures and tests of the SQLite module, collected here with this module's database_url.
database = on_sqlite.database
store = on_sqlite.store
globals().update(
    {
        name: test
        for name, test in vars(on_sqlite).items()
        if name.startswith("test_") and "wal_mode" not in name
    }
)


@pytest.fixture
def database_url(postgres_server) -> str:
    """A fresh, empty PostgreSQL database per test."""
    return postgres_server.create_database(f"store_{next(_numbers)}")
