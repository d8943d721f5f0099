"""API tests: the service over HTTP against a live uvicorn, on SQLite and on PostgreSQL."""
