"""Fixtures shared by every test: settings in a temp dir, a fresh database, a real SMTP sink.

The database is SQLite in a temp dir by default; PASSERELLE_TEST_DATABASE=postgresql runs the same tests
on a PostgreSQL cluster started from initdb/pg_ctl in a temp dir (see tests/pg_cluster.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from passerelle.config import Settings, load_settings
from passerelle.db import create_schema, make_engine, make_session_factory
from tests.smtp_sink import SmtpSink

TEST_DATABASE = os.environ.get("PASSERELLE_TEST_DATABASE", "sqlite")


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.pg_cluster import PostgresCluster

    cluster = PostgresCluster(tmp_path_factory.mktemp("pg"))
    cluster.start()
    try:
        yield cluster.url("passerelle_test")
    finally:
        cluster.stop()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if TEST_DATABASE == "postgresql":
        return request.getfixturevalue("postgres_url")
    if TEST_DATABASE != "sqlite":
        pytest.fail(f"PASSERELLE_TEST_DATABASE must be sqlite or postgresql, not {TEST_DATABASE!r}")
    return f"sqlite:///{tmp_path / 'passerelle.db'}"


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A real aiosmtpd server standing in for the outbound relay; it records what it is given."""
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, smtp_sink: SmtpSink) -> Settings:
    return load_settings(
        environ={},
        overrides={
            "paths": {"var_dir": str(tmp_path / "var")},
            "database": {"url": database_url},
            "site": {"base_url": "http://archive.test"},
            "lists": {"domain": "forum.test"},
            "relay": {"host": "127.0.0.1", "port": smtp_sink.port, "retry_initial_seconds": 1},
            "smtp": {"port": 0},
            "dmarc": {"enabled": False},
            "web": {"port": 0},
        },
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database.url)
    if TEST_DATABASE == "postgresql":
        from tests.pg_cluster import reset_database

        reset_database(engine)
    else:
        create_schema(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def db(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for arranging and checking data; commit explicitly when other sessions must see it."""
    session = session_factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()
