"""The migrations build exactly the schema the models describe, on SQLite and on PostgreSQL.

`alembic upgrade head` on an empty database must give the tables, columns, indexes, unique constraints
and foreign keys of passerelle.models (what `alembic check` verifies), plus the search index; and
`downgrade base` must remove everything again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, pool

from passerelle import search
from passerelle.db import alembic_config, create_schema, migrate
from passerelle.models import Base


def _not_search(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    # The search index (an FTS5 virtual table and its shadow tables, or a tsvector table) is created by
    # passerelle.search, outside the models, in the migration as in create_schema.
    return not (type_ == "table" and name is not None and name.startswith(search.SEARCH_TABLE))


def _schema(engine: Engine) -> dict[str, object]:
    """Everything about the schema that matters, in a comparable form."""
    insp = inspect(engine)
    out: dict[str, object] = {}
    for table in sorted(insp.get_table_names()):
        if table == "alembic_version":
            continue
        out[table] = {
            "columns": [(c["name"], str(c["type"]).split("(")[0], c["nullable"]) for c in insp.get_columns(table)],
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table)
            ),
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
            "fks": sorted((tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                          for f in insp.get_foreign_keys(table)),
        }
    return out


def _engine(url: str) -> Engine:
    return create_engine(url, poolclass=pool.NullPool)


def _check(url_migrated: str, url_created: str) -> None:
    migrate(url_migrated)
    migrated = _engine(url_migrated)
    with migrated.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_object": _not_search, "compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], (
        "the migrations do not build what the models describe (regenerate or add a migration):\n"
        + "\n".join(map(str, diff))
    )
    created = _engine(url_created)
    create_schema(created)
    assert _schema(migrated) == _schema(created)
    assert search.SEARCH_TABLE in inspect(migrated).get_table_names()

    # Running it again is a no-op, and downgrade removes every table (search index included).
    migrate(url_migrated)
    command.downgrade(alembic_config(url_migrated), "base")
    assert set(inspect(migrated).get_table_names()) <= {"alembic_version"}
    command.upgrade(alembic_config(url_migrated), "head")
    assert _schema(migrated) == _schema(created)
    migrated.dispose()
    created.dispose()


def test_sqlite_migrations_match_models(tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path / 'migrated.db'}", f"sqlite:///{tmp_path / 'created.db'}")


@pytest.fixture
def pg_databases(postgres_url: str) -> Iterator[tuple[str, str]]:
    from tests.pg_cluster import fresh_database

    yield fresh_database(postgres_url, "migrations_upgrade"), fresh_database(postgres_url, "migrations_create")


@pytest.mark.postgres
def test_postgresql_migrations_match_models(pg_databases: tuple[str, str]) -> None:
    _check(*pg_databases)
