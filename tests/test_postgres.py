"""The PostgreSQL side: the throwaway cluster, a clean schema per test, accent-insensitive search, and row
claiming with FOR UPDATE SKIP LOCKED (two workers never take the same row, and never wait for each other).

These run in every suite run (SQLite or PostgreSQL): they need the PostgreSQL binaries, not the switch.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from gateway.claims import claim_ids
from passerelle.db import make_engine, make_session_factory, session_scope
from passerelle.models import OutboxMessage
from tests.factories import make_list
from tests.pg_cluster import PostgresNotAvailable, find_bindir, reset_database

pytestmark = pytest.mark.postgres
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    reset_database(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def pg_factory(pg_engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(pg_engine)


def test_cluster_runs_unprivileged_with_speed_settings(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        assert conn.execute(text("SHOW fsync")).scalar() == "off"
        assert conn.execute(text("SHOW server_encoding")).scalar() == "UTF8"
        data_dir = conn.execute(text("SHOW data_directory")).scalar()
        assert conn.execute(text("SELECT count(*) FROM pg_extension WHERE extname = 'unaccent'")).scalar() == 1
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: the cluster belongs to an unprivileged account.
        assert Path(data_dir).stat().st_uid != 0


def test_missing_binaries_fail_with_an_actionable_message(tmp_path: Path) -> None:
    with pytest.raises(PostgresNotAvailable, match="apt-get install postgresql"):
        find_bindir(path=str(tmp_path), patterns=(str(tmp_path / "nothing" / "*" / "bin" / "initdb"),))


def test_reset_database_empties_everything_and_restarts_ids(
    pg_engine: Engine, pg_factory: sessionmaker[Session]
) -> None:
    with session_scope(pg_factory) as session:
        first = make_list(session, "forum").id
    reset_database(pg_engine)
    with session_scope(pg_factory) as session:
        assert make_list(session, "other").id == first == 1
    # A test that dropped tables leaves a partial schema: the next reset rebuilds it.
    with pg_engine.begin() as conn:
        conn.execute(text("DROP TABLE outbox CASCADE"))
    reset_database(pg_engine)
    assert "outbox" in inspect(pg_engine).get_table_names()


def test_reset_database_is_not_blocked_by_a_leaked_transaction(pg_engine: Engine, postgres_url: str) -> None:
    leaked = make_engine(postgres_url)
    conn = leaked.connect()
    conn.execute(text("SELECT count(*) FROM lists")).scalar()  # holds a lock until the transaction ends
    started = time.monotonic()
    reset_database(pg_engine)
    assert time.monotonic() - started < 15
    leaked.dispose()


def test_search_configuration_folds_accents_and_case(pg_engine: Engine) -> None:
    from passerelle.search import PG_CONFIG

    with pg_engine.connect() as conn:
        match = conn.execute(
            text(f"SELECT to_tsvector('{PG_CONFIG}', 'Fiscalité des FRONTALIERS à Genève')"
                 f" @@ to_tsquery('{PG_CONFIG}', 'fiscalite & frontaliers & geneve')")
        ).scalar()
    assert match is True


def _outbox(session: Session, count: int) -> None:
    ml = make_list(session, "forum")
    for i in range(count):
        session.add(OutboxMessage(
            kind="notice", dedupe_key=f"n:{i}", list_id=ml.id, recipient=f"r{i}@example.org", payload=b"x",
            status="pending", next_attempt_at=NOW, created_at=NOW,
        ))


def test_two_claimers_skip_each_others_rows_without_waiting(pg_factory: sessionmaker[Session]) -> None:
    with session_scope(pg_factory) as session:
        _outbox(session, 10)
    pending = OutboxMessage.status == "pending"
    first = pg_factory()
    try:
        mine = claim_ids(first, OutboxMessage, where=pending, order_by=(OutboxMessage.id,), limit=6,
                         status="sending", worker_id="a", now=NOW)
        # ``first`` still holds its row locks (transaction open): the second claimer must not wait for it.
        started = time.monotonic()
        with session_scope(pg_factory) as other:
            theirs = claim_ids(other, OutboxMessage, where=pending, order_by=(OutboxMessage.id,), limit=6,
                               status="sending", worker_id="b", now=NOW)
        assert time.monotonic() - started < 1.0
        first.commit()
    finally:
        first.close()
    assert len(mine) == 6
    assert len(theirs) == 4
    assert not set(mine) & set(theirs)
    with session_scope(pg_factory) as session:
        claimed = dict(session.execute(
            select(OutboxMessage.claimed_by, func.count()).group_by(OutboxMessage.claimed_by)).all())
    assert claimed == {"a": 6, "b": 4}


def test_concurrent_claimers_take_every_row_exactly_once(pg_factory: sessionmaker[Session]) -> None:
    with session_scope(pg_factory) as session:
        _outbox(session, 300)
    taken: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        got: list[int] = []
        try:
            while True:
                with session_scope(pg_factory) as session:
                    ids = claim_ids(session, OutboxMessage, where=OutboxMessage.status == "pending",
                                    order_by=(OutboxMessage.next_attempt_at, OutboxMessage.id), limit=7,
                                    status="sending", worker_id=name, now=NOW + timedelta(seconds=1))
                if not ids:
                    break
                got.extend(ids)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        taken[name] = got

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    every = [i for ids in taken.values() for i in ids]
    assert sorted(every) == list(range(1, 301))
