"""The worker processes several spool rows per transaction (SQLite), each in a savepoint: a row whose
processing fails rolls back alone, the rows around it are archived and fanned out as if processed one by one."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from gateway.inbound import spool_message
from gateway.worker import process_pending
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.models import InboundMessage, Message, OutboxMessage, ThreadRef, Topic
from passerelle.search import SearchQuery, index_message, search_messages
from tests.factories import T0
from tests.gateway.conftest import AUTHOR, LIST, READERS, Forum, make_mail

BAD_ID = "refused-by-the-database@eurometropole.example"


def _refuse_message_in_database(engine: Engine) -> None:
    """A real database error for one Message-ID only (a trigger), whatever the dialect."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text(
                "CREATE TRIGGER refuse_one BEFORE INSERT ON messages"
                f" WHEN NEW.message_id = '{BAD_ID}' BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"
            ))
        else:
            conn.execute(text(
                "CREATE FUNCTION refuse_one() RETURNS trigger AS $$ BEGIN"
                " RAISE EXCEPTION 'refused by a test trigger'; END $$ LANGUAGE plpgsql"
            ))
            conn.execute(text(
                "CREATE TRIGGER refuse_one BEFORE INSERT ON messages FOR EACH ROW"
                f" WHEN (NEW.message_id = '{BAD_ID}') EXECUTE FUNCTION refuse_one()"
            ))


def _spool(factory: sessionmaker[Session], raw: bytes) -> int:
    return spool_message(factory, raw, source="smtp", envelope_from=AUTHOR, envelope_to=[LIST], list_name="forum",
                         now=T0)


def test_a_failing_row_rolls_back_alone_and_the_others_are_archived(
    settings: Settings, session_factory: sessionmaker[Session], engine: Engine, forum: Forum
) -> None:
    f = session_factory
    _refuse_message_in_database(engine)
    first = _spool(f, make_mail(message_id="first@eurometropole.example"))
    bad_raw = make_mail(subject="Re: Travailleurs frontaliers : double imposition", message_id=BAD_ID,
                        in_reply_to="first@eurometropole.example", references="<first@eurometropole.example>")
    bad = _spool(f, bad_raw)
    last = _spool(f, make_mail(subject="Re: Travailleurs frontaliers : double imposition",
                               message_id="last@eurometropole.example", in_reply_to="first@eurometropole.example",
                               references="<first@eurometropole.example>"))

    assert process_pending(settings, f, now=T0) == 2 + settings.worker.max_attempts

    with session_scope(f) as session:
        rows = {row.id: row for row in session.scalars(select(InboundMessage))}
        assert (rows[first].status, rows[last].status) == ("done", "done")
        assert rows[bad].status == "shunted" and rows[bad].attempts == settings.worker.max_attempts
        assert "refused by a test trigger" in rows[bad].reason and rows[bad].raw == bad_raw
        messages = {m.message_id: m for m in session.scalars(select(Message))}
        assert set(messages) == {"first@eurometropole.example", "last@eurometropole.example"}
        # The rows after the failing one were threaded against the rows before it.
        first_msg, last_msg = messages["first@eurometropole.example"], messages["last@eurometropole.example"]
        assert last_msg.topic_id == first_msg.topic_id and last_msg.parent_id == first_msg.id
        topic = session.get(Topic, first_msg.topic_id)
        assert topic.message_count == 2 and session.scalar(select(func.count()).select_from(Topic)) == 1
        # Nothing of the failed attempts is left: no ghost of its id, no copy of it.
        assert session.get(ThreadRef, BAD_ID) is None
        copies = sorted((o.message_pk, o.recipient) for o in session.scalars(select(OutboxMessage)))
        assert copies == sorted((m.id, r) for m in messages.values() for r in READERS)


def test_a_batch_yields_to_waiting_smtp_commits_and_loses_nothing(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an SMTP commit always waiting, every batch ends after its first row: each row is its own
    transaction, and every one is still archived once with its copies."""
    import gateway.worker as worker

    monkeypatch.setattr(worker, "BATCH_YIELD_SECONDS", 0.0)
    f = session_factory
    ids = [_spool(f, make_mail(subject="Stationnement résidentiel", message_id=f"y{i}@eurometropole.example"))
           for i in range(4)]
    asked: list[bool] = []

    def waiting() -> bool:
        asked.append(True)
        return True

    assert process_pending(settings, f, now=T0, yield_to=waiting) == len(ids)
    with session_scope(f) as session:
        assert [r.status for r in session.scalars(select(InboundMessage).order_by(InboundMessage.id))] == ["done"] * 4
        assert session.scalar(select(func.count()).select_from(Message)) == 4
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 4 * len(READERS)
    # SQLite batches asked after each row but the last; PostgreSQL runs one row per transaction anyway.
    assert len(asked) in (0, len(ids) - 1)


def test_the_search_entry_of_a_post_is_replaced_not_doubled(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    f = session_factory
    _spool(f, make_mail(subject="Navette transfrontalière", message_id="idx@eurometropole.example"))
    assert process_pending(settings, f, now=T0) == 1
    with session_scope(f) as session:
        message = session.scalar(select(Message))
        assert len(search_messages(session, SearchQuery(text="transfrontalière", see_everything=True)).hits) == 1
        message.subject = "Parking relais"
        index_message(session, message, body="Horaires du parking relais")
    with session_scope(f) as session:
        assert not search_messages(session, SearchQuery(text="transfrontalière", see_everything=True)).hits
        assert len(search_messages(session, SearchQuery(text="relais", see_everything=True)).hits) == 1
