"""Alembic's entry point: migrate over the connection the store hands in (no alembic.ini, no URL here)."""

from alembic import context

from orchestrator.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the run store's migrations run through orchestrator.store.database.upgrade only")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
