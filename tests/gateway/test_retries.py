"""Delivery retries with a fake clock: the relay answers 451 then is down for an hour; rows are retried with
backoff, nothing is lost, each is delivered once when it is back, across a restart (state is the outbox
table); a relay down for longer than relay.retry_for_hours makes the rows failed and visible to operators."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from archive_web import create_app
from gateway.delivery import deliver_pending, retry_delay
from gateway.notices import queue_notice
from passerelle.config import Settings
from passerelle.db import make_engine, make_session_factory, session_scope
from passerelle.models import OutboxMessage
from tests.factories import make_list, make_member
from tests.smtp_sink import SmtpSink

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RECIPIENTS = [f"member{i}@example.org" for i in range(5)]


@pytest.fixture
def relay_settings(settings: Settings) -> Settings:
    return settings.with_overrides(
        {"relay": {"retry_initial_seconds": 60, "retry_max_seconds": 1200, "retry_for_hours": 3, "timeout": 5.0}}
    )


def _queue(factory: sessionmaker[Session], settings: Settings) -> list[int]:
    with session_scope(factory) as session:
        ml = make_list(session)
        rows = [
            queue_notice(session, settings, ml, to=rcpt, subject=f"Avis {i}", body=f"Bonjour {i}\n", now=T0,
                         dedupe_key=f"test-retry:{i}")
            for i, rcpt in enumerate(RECIPIENTS)
        ]
        return [r.id for r in rows if r is not None]


def _rows(factory: sessionmaker[Session]) -> list[OutboxMessage]:
    with session_scope(factory) as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_relay_down_for_an_hour_then_back(relay_settings: Settings, session_factory: sessionmaker[Session],
                                          smtp_sink: SmtpSink) -> None:
    settings = relay_settings
    ids = _queue(session_factory, settings)
    assert len(ids) == len(RECIPIENTS)

    # First 20 minutes: the relay is up but answers 451 to DATA (a full queue, greylisting...).
    smtp_sink.handler.refuse_data = "451 4.3.0 Temporary local problem, try again later"
    now = T0
    stats = deliver_pending(settings, session_factory, now=now)
    assert (stats.sent, stats.retried, stats.failed) == (0, len(ids), 0)
    for row in _rows(session_factory):
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.next_attempt_at == now + retry_delay(settings, 1) == now + timedelta(seconds=60)
        assert row.last_error.startswith("451 4.3.0 Temporary local problem")

    # Then the relay is down (connection refused) until T0 + 1h. The clock advances minute by minute; each
    # row is tried only when its backoff says so.
    smtp_sink.stop()
    attempts_seen: list[tuple[datetime, int]] = []
    factory = session_factory
    while now < T0 + timedelta(hours=1):
        now += timedelta(minutes=1)
        if now == T0 + timedelta(minutes=20):
            smtp_sink.handler.refuse_data = None
        if now == T0 + timedelta(minutes=30):
            # A restart: a new process, new engine and sessions; all the state is in the outbox table.
            factory.kw["bind"].dispose()
            factory = make_session_factory(make_engine(settings.database.url))
        stats = deliver_pending(settings, factory, now=now)
        assert stats.sent == 0 and stats.failed == 0
        if stats.claimed:
            attempts_seen.append((now, _rows(factory)[0].attempts))
    rows = _rows(factory)
    assert all(r.status == "pending" for r in rows)
    # Backoff: 1, 2, 4, 8, 16, then 20 (the cap) minutes -> attempts at +1, +3, +7, +15, +31, +51 minutes
    # (the first was at 0).
    assert [(t - T0, n) for t, n in attempts_seen] == [
        (timedelta(minutes=1), 2), (timedelta(minutes=3), 3), (timedelta(minutes=7), 4),
        (timedelta(minutes=15), 5), (timedelta(minutes=31), 6), (timedelta(minutes=51), 7),
    ]
    assert rows[0].next_attempt_at == T0 + timedelta(minutes=71)
    assert "cannot connect to relay" in rows[0].last_error

    # The relay is back (same address). Nothing goes out before the next attempt is due...
    back = SmtpSink(port=smtp_sink.port)
    back.start()
    try:
        assert deliver_pending(settings, factory, now=now).claimed == 0
        # ...then everything, once.
        stats = deliver_pending(settings, factory, now=T0 + timedelta(minutes=71))
        assert (stats.sent, stats.retried, stats.failed) == (len(ids), 0, 0)
        assert sorted(r for rec in back.received for r in rec.rcpt_tos) == sorted(RECIPIENTS)
        assert all(rec.mail_from.startswith("forum-bounces+") for rec in back.received)
        assert all(r.status == "sent" and r.attempts == 8 for r in _rows(factory))
        # A later pass (or a second deliverer) sends nothing again.
        assert deliver_pending(settings, factory, now=T0 + timedelta(hours=5)).claimed == 0
        assert len(back.received) == len(ids)
    finally:
        back.stop()
        factory.kw["bind"].dispose()


def test_a_deliverer_killed_mid_batch_is_taken_over(relay_settings: Settings, session_factory: sessionmaker[Session],
                                                    smtp_sink: SmtpSink) -> None:
    settings = relay_settings
    ids = _queue(session_factory, settings)
    # The process claimed the rows and died before sending: they stay "sending" with its claim.
    with session_scope(session_factory) as session:
        for row in session.scalars(select(OutboxMessage)):
            row.status, row.claimed_by, row.claimed_at = "sending", "delivery@dead-host:1:1", T0
    assert deliver_pending(settings, session_factory, now=T0 + timedelta(seconds=10)).claimed == 0
    later = T0 + timedelta(seconds=settings.worker.claim_timeout + 1)
    stats = deliver_pending(settings, session_factory, now=later)
    assert stats.sent == len(ids)
    assert sorted(r for rec in smtp_sink.received for r in rec.rcpt_tos) == sorted(RECIPIENTS)


def test_gives_up_after_retry_for_hours_and_shows_it(relay_settings: Settings,
                                                     session_factory: sessionmaker[Session],
                                                     smtp_sink: SmtpSink) -> None:
    settings = relay_settings
    ids = _queue(session_factory, settings)
    smtp_sink.handler.refuse_data = "451 4.7.1 Greylisted, please try again later"
    now = T0
    passes = 0
    while now <= T0 + timedelta(hours=4):
        deliver_pending(settings, session_factory, now=now)
        passes += 1
        now += timedelta(minutes=5)
    rows = _rows(session_factory)
    assert [r.status for r in rows] == ["failed"] * len(ids)
    for row in rows:
        assert row.last_error.startswith("gave up after")
        assert "over 3h" in row.last_error and "451 4.7.1 Greylisted" in row.last_error
        # Backoff capped at 20 minutes over 3 hours: about a dozen attempts, not one per pass.
        assert 8 <= row.attempts <= 14 < passes
    assert smtp_sink.received == []

    # Operators see them, with the reason, on the web status page.
    with session_scope(session_factory) as session:
        operator, _ = make_member(session, "operator@example.org")
        operator.is_operator = True
        operator_id = operator.id
    app = create_app(settings, session_factory=session_factory, clock=lambda: now)
    client = app.test_client()
    with client.session_transaction() as web_session:
        web_session["mid"], web_session["exp"] = operator_id, now.timestamp() + 3600
    page = client.get("/status")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for rcpt in RECIPIENTS:
        assert re.search(rf"<td>{re.escape(rcpt)}</td><td>notice</td>.*?gave up after \d+ attempts over 3h", html)
    assert "451 4.7.1 Greylisted" in html


def test_a_permanent_refusal_is_not_retried(relay_settings: Settings, session_factory: sessionmaker[Session],
                                            smtp_sink: SmtpSink) -> None:
    settings = relay_settings
    _queue(session_factory, settings)
    smtp_sink.handler.refuse_rcpt["member2@example.org"] = "550 5.1.1 No such user"
    stats = deliver_pending(settings, session_factory, now=T0)
    assert (stats.sent, stats.failed, stats.retried) == (4, 1, 0)
    failed = [r for r in _rows(session_factory) if r.status == "failed"]
    assert [(r.recipient, r.last_error) for r in failed] == [("member2@example.org", "550 5.1.1 No such user")]
