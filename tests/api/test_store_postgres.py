"""The run store's own tests (tests/unit/test_store_runs.py), run again on PostgreSQL: the same
migrations, events, projection and thread safety on the server the service uses in production;
and concurrent uploads of one candidate, where PostgreSQL (unlike SQLite) lets the inserts race."""

import itertools

import pytest

from tests.unit import test_store_candidates as candidates_on_sqlite
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


candidates = candidates_on_sqlite.candidates
test_one_candidate_uploaded_by_many_at_once_is_stored_once = (
    candidates_on_sqlite.test_one_candidate_uploaded_by_many_at_once_is_stored_once
)


@pytest.fixture
def database_url(postgres_server) -> str:
    """A fresh, empty PostgreSQL database per test."""
    return postgres_server.create_database(f"store_{next(_numbers)}")
