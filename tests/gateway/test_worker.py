"""The spool worker without the network: spool_message() then process_pending(now=...), checked in the DB."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from gateway.inbound import spool_message
from gateway.recipients import post_recipients
from gateway.worker import process_pending
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.models import (
    Attachment,
    CategoryFollow,
    HeldMessage,
    InboundMessage,
    Message,
    OutboxMessage,
    Subscription,
    ThreadRef,
    Topic,
    TopicFollow,
)
from passerelle.search import SearchQuery, search_messages
from tests import corpus_dir
from tests.factories import T0, make_category, make_list, make_member
from tests.gateway.conftest import AUTHOR, DIGEST_READER, LIST, READERS, Forum, make_mail


def _spool(
    factory: sessionmaker[Session], raw: bytes, *, rcpt: str = LIST, sender: str = AUTHOR, list_name: str = "forum",
    now: datetime = T0,
) -> int:
    return spool_message(factory, raw, source="smtp", envelope_from=sender, envelope_to=[rcpt],
                         list_name=list_name, now=now)


def _row(factory: sessionmaker[Session], row_id: int) -> tuple[str, str, int]:
    with session_scope(factory) as session:
        row = session.get(InboundMessage, row_id)
        return row.status, row.reason, row.attempts


def _count(factory: sessionmaker[Session], model: type) -> int:
    with session_scope(factory) as session:
        return session.scalar(select(func.count()).select_from(model))


def _topic_of(factory: sessionmaker[Session], message_id: str) -> int | None:
    with session_scope(factory) as session:
        return session.scalar(select(Message.topic_id).where(Message.message_id == message_id))


def test_topic_reply_and_late_parent_join_one_thread(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    f = session_factory
    _spool(f, make_mail())
    # A reply whose parent never reached us: the parent is a ghost of the same topic...
    _spool(f, make_mail(subject="Re: x", sender=READERS[0], message_id="r2@landkreis.example",
                        references="<m1@eurometropole.example> <lost@regione.example>",
                        in_reply_to="lost@regione.example"), sender=READERS[0])
    assert process_pending(settings, f, now=T0) == 2
    topic = _topic_of(f, "m1@eurometropole.example")
    assert _topic_of(f, "r2@landkreis.example") == topic
    with session_scope(f) as session:
        ghost = session.get(ThreadRef, "lost@regione.example")
        assert ghost.is_ghost and ghost.topic_id == topic
    # ... and when the lost parent finally arrives (no references of its own), it joins that topic.
    _spool(f, make_mail(subject="Completely different words", sender=READERS[1], message_id="lost@regione.example"),
           sender=READERS[1])
    process_pending(settings, f, now=T0 + timedelta(minutes=5))
    assert _topic_of(f, "lost@regione.example") == topic
    with session_scope(f) as session:
        assert not session.get(ThreadRef, "lost@regione.example").is_ghost
        t = session.get(Topic, topic)
        assert (t.message_count, t.status) == (3, "answered")
        assert t.first_answer_at == T0


def test_subject_fallback_only_within_the_window(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    f = session_factory
    _spool(f, make_mail(subject="Réunion transfrontalière"))
    process_pending(settings, f, now=T0)
    later = T0 + timedelta(days=10)
    _spool(f, make_mail(subject="AW: Réunion transfrontalière", sender=READERS[0], message_id="a@x.example",
                        date=later), sender=READERS[0])
    process_pending(settings, f, now=later)
    too_late = T0 + timedelta(days=50)
    _spool(f, make_mail(subject="Re: Réunion transfrontalière", sender=READERS[1], message_id="b@x.example",
                        date=too_late), sender=READERS[1])
    # Same subject without any prefix: a new question, never merged by subject.
    _spool(f, make_mail(subject="Réunion transfrontalière", sender=READERS[2], message_id="c@x.example", date=later),
           sender=READERS[2])
    process_pending(settings, f, now=too_late)
    first = _topic_of(f, "m1@eurometropole.example")
    assert _topic_of(f, "a@x.example") == first
    assert _topic_of(f, "b@x.example") not in (first, None)
    assert _topic_of(f, "c@x.example") not in (first, None)


def test_duplicate_message_id_is_archived_once(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    f = session_factory
    first = _spool(f, make_mail())
    # The sender retried after a timeout: the same message spooled twice.
    second = _spool(f, make_mail())
    process_pending(settings, f, now=T0)
    assert _row(f, first)[0] == "done"
    status, reason, _ = _row(f, second)
    assert status == "duplicate" and "already archived in list forum (message #1," in reason
    assert _count(f, Message) == 1
    assert _count(f, OutboxMessage) == 3
    # Processing the row again (an operator replays it) adds nothing either.
    with session_scope(f) as session:
        session.get(InboundMessage, first).status = "new"
    process_pending(settings, f, now=T0)
    assert _row(f, first)[0] == "duplicate"
    assert (_count(f, Message), _count(f, OutboxMessage)) == (1, 3)


def test_fan_out_recipients_follow_modes_mutes_and_follows(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    f = session_factory
    _spool(f, make_mail())
    process_pending(settings, f, now=T0)
    with session_scope(f) as session:
        topic = session.scalar(select(Topic))
        members = {s.member.email: s.member_id for s in session.scalars(select(Subscription))}
        cat = make_category(session, make_list(session), "Fiscalité")
        topic.category_id = cat.id
        session.add(TopicFollow(member_id=members[READERS[0]], topic_id=topic.id, mode="mute", created_at=T0))
        session.add(CategoryFollow(member_id=members[READERS[1]], category_id=cat.id, mode="mute", created_at=T0))
        session.add(TopicFollow(member_id=members[DIGEST_READER], topic_id=topic.id, mode="follow", created_at=T0))
        session.flush()
        got = post_recipients(session, forum.list_id, topic_id=topic.id, category_id=cat.id, author_email=AUTHOR,
                              send_copy_to_author=False)
        assert got == sorted([READERS[2], DIGEST_READER])
        # A member who muted the category but follows this topic still gets it.
        session.add(TopicFollow(member_id=members[READERS[1]], topic_id=topic.id, mode="follow", created_at=T0))
        session.flush()
        got = post_recipients(session, forum.list_id, topic_id=topic.id, category_id=cat.id, author_email=AUTHOR,
                              send_copy_to_author=True)
        assert got == sorted([AUTHOR, READERS[1], READERS[2], DIGEST_READER])


def test_stranger_is_held_and_moderators_told(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    f = session_factory
    row = _spool(f, make_mail(sender="stranger@elsewhere.example", message_id="s1@elsewhere.example"),
                 sender="stranger@elsewhere.example")
    process_pending(settings, f, now=T0)
    status, reason, _ = _row(f, row)
    assert status == "held" and "not a member" in reason
    with session_scope(f) as session:
        held = session.scalar(select(HeldMessage))
        assert held.inbound_id == row and held.token and held.expires_at > T0
        notices = {(o.recipient, o.kind) for o in session.scalars(select(OutboxMessage))}
    assert ("moderation@eurometropole.example", "moderation") in notices
    assert _count(f, Message) == 0


def test_stranger_refused_when_not_holding(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    settings = settings.with_overrides({"lists": {"hold_non_members": False}})
    f = session_factory
    row = _spool(f, make_mail(sender="stranger@elsewhere.example", message_id="s1@elsewhere.example"),
                 sender="stranger@elsewhere.example")
    process_pending(settings, f, now=T0)
    status, reason, _ = _row(f, row)
    assert status == "dropped" and reason.startswith("refused:") and "stranger@elsewhere.example was told" in reason
    with session_scope(f) as session:
        [notice] = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "notice"))
        assert notice.recipient == "stranger@elsewhere.example"
        assert b"subscribe" in notice.payload and b"forum-request@forum.test" in notice.payload


def test_first_posts_of_a_new_member_are_held(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    settings = settings.with_overrides({"lists": {"hold_first_posts": 1}})
    f = session_factory
    with session_scope(f) as session:
        ml = make_list(session)
        _, sub = make_member(session, "newbie@example.org", mailing_list=ml)
        sub.accepted_posts = 0
    row = _spool(f, make_mail(sender="newbie@example.org", message_id="n1@example.org"), sender="newbie@example.org")
    # An established member is not held.
    other = _spool(f, make_mail(message_id="m9@eurometropole.example"))
    process_pending(settings, f, now=T0)
    assert _row(f, row)[0] == "held" and "first 1 posts" in _row(f, row)[1]
    assert _row(f, other)[0] == "done"


def test_reply_to_closed_topic_is_refused_politely(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    f = session_factory
    _spool(f, make_mail())
    process_pending(settings, f, now=T0)
    with session_scope(f) as session:
        topic = session.scalar(select(Topic))
        topic.status, topic.outcome, topic.closed_at = "closed", "solved", T0
        topic_id = topic.id
    row = _spool(f, make_mail(subject="Re: Travailleurs", sender=READERS[0], message_id="late@landkreis.example",
                              in_reply_to="m1@eurometropole.example"), sender=READERS[0])
    process_pending(settings, f, now=T0 + timedelta(hours=1))
    status, reason, _ = _row(f, row)
    assert status == "dropped" and f"closed topic #{topic_id}" in reason
    with session_scope(f) as session:
        [notice] = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "notice"))
        assert notice.recipient == READERS[0]
        assert f"http://archive.test/t/{topic_id}".encode() in notice.payload
    assert _count(f, Message) == 1


def test_failing_row_is_retried_then_shunted_with_its_bytes(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    f = session_factory
    raw = make_mail()
    row = _spool(f, raw)
    # The search index is gone: archiving fails (a real database error, not a mock).
    with session_scope(f) as session:
        session.execute(text("DROP TABLE message_search"))
    process_pending(settings, f, now=T0, limit=1)
    status, reason, attempts = _row(f, row)
    assert (status, attempts) == ("new", 1) and reason.startswith("attempt 1 failed: ") and "message_search" in reason
    process_pending(settings, f, now=T0)
    status, reason, attempts = _row(f, row)
    assert status == "shunted" and attempts == settings.worker.max_attempts
    assert reason.startswith("shunted after 3 failed attempts") and "message_search" in reason
    with session_scope(f) as session:
        assert session.get(InboundMessage, row).raw == raw
    # Nothing half-written: the failed attempts were rolled back.
    assert (_count(f, Message), _count(f, Topic), _count(f, OutboxMessage)) == (0, 0, 0)


def test_abandoned_claims_are_taken_over_recent_ones_are_not(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    f = session_factory
    stale = _spool(f, make_mail())
    busy = _spool(f, make_mail(message_id="m2@eurometropole.example"))
    now = T0 + timedelta(hours=1)
    with session_scope(f) as session:
        for row_id, claimed in ((stale, now - timedelta(seconds=settings.worker.claim_timeout + 1)),
                                (busy, now - timedelta(seconds=10))):
            row = session.get(InboundMessage, row_id)
            row.status, row.claimed_by, row.claimed_at = "processing", "worker@gone:1:1", claimed
    assert process_pending(settings, f, now=now) == 1
    assert _row(f, stale)[0] == "done"
    assert _row(f, busy)[0] == "processing"


def test_not_mail_is_shunted_at_once_with_the_reason(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    f = session_factory
    row = _spool(f, b"\x00\x01binary junk without any header\r\n" * 3)
    process_pending(settings, f, now=T0)
    status, reason, attempts = _row(f, row)
    assert status == "shunted" and attempts == 0 and "not a usable mail message" in reason


def test_mail_to_owner_is_forwarded_to_moderators(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    f = session_factory
    row = _spool(f, make_mail(to="forum-owner@forum.test", sender="stranger@elsewhere.example"),
                 rcpt="forum-owner@forum.test", sender="stranger@elsewhere.example")
    process_pending(settings, f, now=T0)
    status, reason, _ = _row(f, row)
    assert status == "done" and "moderation@eurometropole.example" in reason
    with session_scope(f) as session:
        [notice] = session.scalars(select(OutboxMessage))
        assert notice.recipient == "moderation@eurometropole.example"
        assert b"Reply-To: stranger@elsewhere.example" in notice.payload


def test_mail_to_bounce_address_that_is_no_bounce_is_dropped(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    f = session_factory
    row = _spool(f, make_mail(subject="Hello?"), rcpt="forum-bounces+x=y.example@forum.test")
    process_pending(settings, f, now=T0)
    status, reason, _ = _row(f, row)
    assert status == "dropped" and "not a delivery report" in reason
    assert _count(f, Message) == 0


def test_attachments_html_and_search_index(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    f = session_factory
    raw = (corpus_dir() / "hyperkitty-1.3.12" / "attachment-2.txt").read_bytes()
    with session_scope(f) as session:
        from email import message_from_bytes
        from email.utils import parseaddr

        sender = parseaddr(message_from_bytes(raw)["From"])[1].lower()
        make_member(session, sender, mailing_list=make_list(session))
    row = _spool(f, raw, sender=sender)
    process_pending(settings, f, now=T0)
    assert _row(f, row)[0] == "done", _row(f, row)
    with session_scope(f) as session:
        message = session.scalar(select(Message))
        assert message.body_text.strip()
        attachments = list(session.scalars(select(Attachment)))
        assert attachments and all(a.size == len(a.data) for a in attachments)
        words = [w for w in message.body_text.split() if w.isalpha() and len(w) > 4]
        page = search_messages(session, SearchQuery(text=words[0], see_everything=True))
        assert message.id in [hit.message_pk for hit in page.hits]


@pytest.mark.slow
def test_ingest_rate(settings: Settings, session_factory: sessionmaker[Session], forum: Forum) -> None:
    """Spooled posts processed per second on this machine (archive, thread, index, outbox rows)."""
    f = session_factory
    count = 300
    for n in range(count):
        parent = f"rate-{n - 1}@eurometropole.example" if n % 2 else None
        raw = make_mail(subject=f"{'Re: ' if parent else ''}Sujet {n - (n % 2)}",
                        message_id=f"rate-{n}@eurometropole.example", in_reply_to=parent,
                        references=f"<{parent}>" if parent else None, sender=READERS[n % 3])
        _spool(f, raw, sender=READERS[n % 3])
    started, cpu_started = time.perf_counter(), time.process_time()
    done = process_pending(settings, f, now=T0, limit=count)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(f"\ningest: {count} messages in {elapsed:.2f}s = {count / elapsed:.0f} msg/s"
          f" ({count / cpu:.0f} msg/s of this process's CPU)")
    assert done == count
    assert _count(f, Message) == count and _count(f, Topic) == count // 2


def test_mail_fed_by_a_mailbox_at_another_domain_is_a_post_and_checked_as_one(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    f = session_factory
    # IMAP rows carry the mailbox's own address (or none): they are posts, membership applies.
    stranger = spool_message(f, make_mail(sender="stranger@elsewhere.example", message_id="s9@elsewhere.example"),
                             source="imap:regio", envelope_from="", envelope_to=["regio@partner.example"],
                             list_name="forum", now=T0)
    member = spool_message(f, make_mail(message_id="m7@eurometropole.example"), source="imap:regio",
                           envelope_from=AUTHOR, envelope_to=[], list_name="forum", now=T0)
    process_pending(settings, f, now=T0)
    assert _row(f, stranger)[0] == "held"
    assert _row(f, member)[0] == "done"
