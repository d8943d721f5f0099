"""The database behind the run store: an engine, sessions (one per call), migrations at start-up.

Embedded default: SQLite in WAL mode at ``<state_dir>/testbed.db`` (readers never wait for the
writer). ``TESTBED_DATABASE_URL`` selects PostgreSQL (``postgresql+psycopg://...``) instead.

SQLite write transactions start with ``BEGIN IMMEDIATE``: a transaction that reads and then
writes (every event updates its run's projection) takes the write lock up front, so two threads
queue on the busy timeout instead of one failing with "database is locked" when it upgrades from
reading to writing. On PostgreSQL the same serialization comes from locking the run's row.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.config import Settings
from orchestrator.errors import ConfigurationError, InfrastructureError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE_OPTION = "testbed_write"


def database_url(settings: Settings) -> str:
    """The configured URL, or the embedded SQLite file in the state directory."""
    return settings.database_url or f"sqlite:///{settings.database_file}"


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(a URL that cannot be parsed)"


def _prepare_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver must not open transactions behind our back: ``_on_begin`` does, our way.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            # NORMAL: WAL stays consistent; a power cut may lose the last commits, never corrupt the file.
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        writing = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


class Database:
    """An engine and its sessions. Thread-safe: every call of the stores opens its own session."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reading = sessionmaker(engine, expire_on_commit=False)
        self._writing = sessionmaker(
            engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises.

        Database trouble becomes an ``InfrastructureError``: it is the testbed's, not the user's.
        """
        maker = self._writing if write else self._reading
        try:
            with maker() as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise InfrastructureError(f"run store ({self.dialect}): {exc}") from exc

    def close(self) -> None:
        self.engine.dispose()


def lost_insert_race(exc: InfrastructureError) -> bool:
    """Did a transaction fail because another one inserted the same key first (PostgreSQL)?"""
    return isinstance(exc.__cause__, IntegrityError)


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision (from empty, or from any earlier one)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def open_database(url: str, *, migrate: bool = True) -> Database:
    """Connect (creating the SQLite file's directory if needed) and migrate to the newest schema."""
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError as exc:
        raise ConfigurationError(f"database_url: not a database URL: {shown_url(url)}") from exc
    if backend not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"database_url: only sqlite and postgresql are supported, not {shown_url(url)}"
        )
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        raise ConfigurationError(f"database_url: cannot use {shown_url(url)}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        database_path = engine.url.database
        if database_path and database_path != ":memory:":
            Path(database_path).parent.mkdir(parents=True, exist_ok=True)
        _prepare_sqlite(engine)
    if migrate:
        try:
            upgrade(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            raise InfrastructureError(f"run store: cannot migrate {shown_url(url)}: {exc}") from exc
    return Database(engine)
