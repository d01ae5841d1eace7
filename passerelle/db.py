"""Engine, sessions and schema. SQLite (WAL) is the embedded default; PostgreSQL the scale-out database."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from . import models

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(
    url: str, *, busy_timeout: int = 10, echo: bool = False, sqlite_immediate: bool = True
) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout on every connection.

    ``sqlite_immediate``: transactions take SQLite's write lock when they begin (writers: gateway, worker,
    scheduler), so that two writers queue on busy_timeout instead of one failing midway; readers (the web
    archive) pass False and begin deferred, so they never wait for a writer.
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if parsed.get_backend_name() == "sqlite":
        ensure_sqlite_directory(url)
        kwargs["connect_args"] = {"timeout": busy_timeout, "check_same_thread": False}
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the web read while the gateway writes; foreign keys are off by default in SQLite.
            # pysqlite's own transaction handling is disabled so that BEGIN IMMEDIATE below takes the
            # write lock at the start of a transaction instead of failing with "database is locked" midway.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if sqlite_immediate else "BEGIN")

        return engine
    kwargs["pool_pre_ping"] = True
    kwargs["pool_size"] = 10
    kwargs["max_overflow"] = 20
    return create_engine(url, **kwargs)


def ensure_sqlite_directory(url: str) -> None:
    """Create the folder of a SQLite database file (./var on a fresh checkout)."""
    parsed = make_url(url)
    database = parsed.database or ""
    is_file = database and database != ":memory:" and not database.startswith("file:")
    if parsed.get_backend_name() == "sqlite" and is_file:
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_postgres(engine_or_session: Engine | Session) -> bool:
    bind = engine_or_session.get_bind() if isinstance(engine_or_session, Session) else engine_or_session
    return bind.dialect.name == "postgresql"


def create_schema(engine: Engine) -> None:
    """Create every table from the models plus the search index (tests and throwaway databases)."""
    from . import search

    models.Base.metadata.create_all(engine)
    with engine.begin() as conn:
        search.create_search_schema(conn)


def drop_schema(engine: Engine) -> None:
    from . import search

    with engine.begin() as conn:
        search.drop_search_schema(conn)
    models.Base.metadata.drop_all(engine)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (alembic upgrade head)."""
    from alembic import command

    ensure_sqlite_directory(url)
    command.upgrade(alembic_config(url), "head")
    log.info("database schema is up to date")
