"""The operators' status page: spool, shunted messages, outbox, failed deliveries, IMAP account health."""

from __future__ import annotations

from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from passerelle.models import ImapCursor, InboundMessage, OutboxMessage
from tests.web.conftest import NOW, Forum, sign_in


def test_status_is_for_operators(client: FlaskClient, forum: Forum) -> None:
    assert client.get("/status").status_code == 302
    for member_id in (forum.member_id, forum.moderator_id):
        sign_in(client, member_id)
        assert client.get("/status").status_code == 403
    sign_in(client, forum.operator_id)
    assert client.get("/status").status_code == 200


def test_status_shows_problems(client: FlaskClient, forum: Forum, db: Session) -> None:
    db.add(InboundMessage(received_at=NOW, source="smtp", envelope_from="x@y.example", envelope_to=["forum@forum.test"],
                          list_name="forum", message_id_header="broken@y.example", size=3, raw=b"bad",
                          status="shunted", attempts=3, reason="parse failed: no headers"))
    db.add(OutboxMessage(kind="post", dedupe_key="post:1", recipient="gone@dead.example", status="failed",
                         attempts=1, next_attempt_at=NOW, created_at=NOW, last_error="550 5.1.1 no such user"))
    db.add(OutboxMessage(kind="post", dedupe_key="post:1", recipient="slow@later.example", status="pending",
                         attempts=2, next_attempt_at=NOW + timedelta(minutes=5), created_at=NOW,
                         last_error="451 4.7.1 greylisted"))
    db.add(ImapCursor(account="regio", folder="INBOX", uidvalidity=7, last_uid=42, messages_spooled=40,
                      last_ok_at=NOW - timedelta(minutes=1)))
    db.add(ImapCursor(account="broken", folder="INBOX", last_uid=0, messages_spooled=0,
                      last_error="LOGIN failed: authentication failed", last_error_at=NOW - timedelta(minutes=2)))
    db.commit()
    sign_in(client, forum.operator_id)
    page = client.get("/status").get_data(as_text=True)
    for expected in ("parse failed: no headers", "broken@y.example", "550 5.1.1 no such user", "gone@dead.example",
                     "451 4.7.1 greylisted", "regio", "LOGIN failed", "Problem", "OK"):
        assert expected in page, expected
