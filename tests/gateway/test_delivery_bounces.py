"""A relay that refuses a member's copy at delivery time (a 5xx to RCPT TO or to DATA) is a bounce as surely
as a DSN sent back later: it feeds the same bounce score, and past the threshold delivery is disabled with
the usual notices. A 4xx is a retry, never a bounce. Real posts, real relay (aiosmtpd), fake clock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.delivery import deliver_pending
from gateway.inbound import spool_message
from gateway.worker import process_pending
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.models import BounceEvent, Member, OutboxMessage, Subscription
from tests.factories import T0
from tests.gateway.conftest import AUTHOR, LIST, READERS, Forum, make_mail
from tests.smtp_sink import SmtpSink

DEAD = READERS[0]


def _post(settings: Settings, factory: sessionmaker[Session], n: int, *, now: object = T0) -> None:
    raw = make_mail(subject=f"Question {n}", message_id=f"q{n}@eurometropole.example")
    spool_message(factory, raw, source="smtp", envelope_from=AUTHOR, envelope_to=[LIST], list_name="forum", now=now)
    assert process_pending(settings, factory, now=now) == 1


def _subscription(session: Session, address: str) -> Subscription:
    return session.scalars(
        select(Subscription).join(Member, Member.id == Subscription.member_id).where(Member.email == address)
    ).one()


def _events(session: Session) -> list[tuple[str, bool, str, str]]:
    return [(e.address, e.hard, e.status, e.reason)
            for e in session.scalars(select(BounceEvent).order_by(BounceEvent.id))]


def test_hard_refusals_at_rcpt_disable_delivery_with_the_usual_notices(
    settings: Settings, session_factory: sessionmaker[Session], smtp_sink: SmtpSink, forum: Forum
) -> None:
    # Two hard bounces an hour apart (the score decays a little in between) are enough here.
    settings = settings.with_overrides({"bounces": {"threshold": 1.9}})
    smtp_sink.handler.refuse_rcpt[DEAD] = f"550 5.1.1 <{DEAD}>: Recipient address rejected: User unknown"

    _post(settings, session_factory, 1)
    stats = deliver_pending(settings, session_factory, now=T0)
    assert (stats.sent, stats.failed, stats.retried) == (len(READERS) - 1, 1, 0)
    with session_scope(session_factory) as s:
        assert _events(s) == [(DEAD, True, "5.1.1", "userunknown")]
        sub = _subscription(s, DEAD)
        assert (sub.status, sub.bounce_score) == ("active", 1.0)

    _post(settings, session_factory, 2, now=T0 + timedelta(hours=1))
    deliver_pending(settings, session_factory, now=T0 + timedelta(hours=1))
    with session_scope(session_factory) as s:
        # The second copy disabled delivery; the member's own notice, sent in the next batch to the same
        # dead address, was refused too: recorded and scored, but delivery is not disabled twice.
        assert _events(s) == [(DEAD, True, "5.1.1", "userunknown")] * 3
        sub = _subscription(s, DEAD)
        assert sub.status == "disabled"
        assert "5.1.1 userunknown" in sub.disabled_reason
        # The notices of gateway.bounce_score.disable_delivery: the member (at the bouncing address anyway)
        # and the moderators.
        notices = {(o.recipient, o.kind) for o in s.scalars(select(OutboxMessage).where(
            OutboxMessage.dedupe_key.like("bounce-disabled:%")))}
        assert notices == {(DEAD, "notice"), ("moderation@eurometropole.example", "moderation")}
    assert "moderation@eurometropole.example" in {rcpt for rcpt, _ in smtp_sink.deliveries()}

    # Delivery is off: the next post has no copy for the dead address.
    smtp_sink.clear()
    _post(settings, session_factory, 3, now=T0 + timedelta(hours=2))
    deliver_pending(settings, session_factory, now=T0 + timedelta(hours=2))
    with session_scope(session_factory) as s:
        copies = {o.recipient for o in s.scalars(select(OutboxMessage).where(
            OutboxMessage.dedupe_key.like("post:%"), OutboxMessage.created_at >= T0 + timedelta(hours=2)))}
        assert DEAD not in copies and set(READERS[1:]) <= copies
        assert len(_events(s)) == 3


def test_temporary_refusals_are_retried_and_never_scored(
    settings: Settings, session_factory: sessionmaker[Session], smtp_sink: SmtpSink, forum: Forum
) -> None:
    smtp_sink.handler.refuse_rcpt[DEAD] = "452 4.2.2 Mailbox full, try again later"
    _post(settings, session_factory, 1)
    for hours in range(3):
        stats = deliver_pending(settings, session_factory, now=T0 + timedelta(hours=hours))
        assert stats.failed == 0
    with session_scope(session_factory) as s:
        assert _events(s) == []
        sub = _subscription(s, DEAD)
        assert (sub.status, sub.bounce_score) == ("active", 0.0)
        row = s.scalars(select(OutboxMessage).where(OutboxMessage.recipient == DEAD)).one()
        assert row.status == "pending" and row.last_error.startswith("452 4.2.2")


def test_a_refused_message_is_a_soft_bounce_counted_once_a_day(
    settings: Settings, session_factory: sessionmaker[Session], smtp_sink: SmtpSink, forum: Forum
) -> None:
    # A 5xx to DATA: the receiving side refused this copy (a content filter), the mailbox is not dead:
    # scored as the same words in a DSN would be, a soft bounce, at most once per day.
    smtp_sink.handler.refuse_data = "554 5.7.1 Message rejected as spam by content filter"
    _post(settings, session_factory, 1)
    _post(settings, session_factory, 2)
    stats = deliver_pending(settings, session_factory, now=T0)
    assert stats.failed == 2 * len(READERS)
    with session_scope(session_factory) as s:
        events = _events(s)
        assert len(events) == 2 * len(READERS)
        assert all(not hard and status == "5.7.1" for _, hard, status, _ in events)
        for reader in READERS:
            sub = _subscription(s, reader)
            assert (sub.status, sub.bounce_score) == ("active", settings.bounces.soft_score)


def test_a_scoring_failure_loses_no_delivery_result(
    settings: Settings, session_factory: sessionmaker[Session], smtp_sink: SmtpSink, forum: Forum,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("scoring is broken")

    monkeypatch.setattr("gateway.delivery.record_bounce", broken)
    smtp_sink.handler.refuse_rcpt[DEAD] = "550 5.1.1 No such user"
    _post(settings, session_factory, 1)
    stats = deliver_pending(settings, session_factory, now=T0)
    assert (stats.sent, stats.failed) == (len(READERS) - 1, 1)
    with session_scope(session_factory) as s:
        statuses = {o.recipient: o.status for o in s.scalars(select(OutboxMessage))}
        assert statuses == {DEAD: "failed", **dict.fromkeys(READERS[1:], "sent")}
        assert _events(s) == []
    # Nothing is left to send again.
    assert deliver_pending(settings, session_factory, now=T0 + timedelta(hours=1)).claimed == 0
