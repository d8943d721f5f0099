"""One module per schema revision, oldest first (Alembic ignores this file)."""
