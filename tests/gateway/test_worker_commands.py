"""Commands through the spool worker: Apple Mail's unsubscribe button, replayed command mails, #commands in
the first mail of a topic, and the reason given to a cross-posted message. spool_message() then
process_pending(now=...), checked in the database and the outbox."""

from __future__ import annotations

from datetime import datetime, timedelta
from email import message_from_bytes
from email.policy import compat32

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker, undefer

from gateway.commands import confirm_token
from gateway.inbound import spool_for_lists, spool_message
from gateway.worker import process_pending
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.models import (
    CategoryFollow,
    InboundMessage,
    Member,
    Message,
    ModerationAction,
    OutboxMessage,
    PendingConfirmation,
    Subscription,
    Topic,
)
from tests import corpus_dir
from tests.factories import T0, make_category, make_list, make_member
from tests.gateway.command_util import body_of
from tests.gateway.conftest import AUTHOR, LIST, READERS, Forum, make_mail
from tests.gateway.dkim_util import StubResolver, sign

SISIMAI = corpus_dir() / "sisimai-bounces" / "maildir" / "bsd"
MOD = "moderation@eurometropole.example"
DOMAIN = "eurometropole.example"
REQUEST = "forum-request@forum.test"
APPLE_USER = "example@icloud.com"


def spool(factory: sessionmaker[Session], raw: bytes, *, rcpt: str = LIST, sender: str = AUTHOR,
          now: datetime = T0) -> int:
    return spool_message(factory, raw, source="smtp", envelope_from=sender, envelope_to=[rcpt],
                         list_name="forum", now=now)


def row(factory: sessionmaker[Session], row_id: int) -> InboundMessage:
    with session_scope(factory) as session:
        found = session.scalar(select(InboundMessage).where(InboundMessage.id == row_id)
                               .options(undefer(InboundMessage.raw)))
        assert found is not None
        session.expunge(found)
        return found


def mails_to(factory: sessionmaker[Session], address: str, kind: str | None = None) -> list[str]:
    """Bodies of the notices queued for ``address`` (post copies have no payload until delivery)."""
    with session_scope(factory) as session:
        query = select(OutboxMessage).where(OutboxMessage.recipient == address).order_by(OutboxMessage.id)
        if kind is not None:
            query = query.where(OutboxMessage.kind == kind)
        return [body_of(message_from_bytes(r.payload, policy=compat32)) for r in session.scalars(query) if r.payload]


def subscription_status(factory: sessionmaker[Session], email: str) -> str:
    with session_scope(factory) as session:
        status = session.scalar(select(Subscription.status).join(Member).where(Member.email == email))
        assert status is not None
        return status


@pytest.fixture
def resolver() -> StubResolver:
    stub = StubResolver()
    stub.add_dkim_key(DOMAIN)
    return stub


@pytest.fixture
def apple_member(session_factory: sessionmaker[Session], forum: Forum) -> str:
    with session_scope(session_factory) as session:
        make_member(session, APPLE_USER, mailing_list=make_list(session, "forum"))
    return APPLE_USER


# ====================================================================== 1. Apple Mail's unsubscribe button


def apple_unsubscribe() -> bytes:
    """A real mail of Apple Mail's Unsubscribe button (Auto-Submitted: auto-replied, X-Apple-Unsubscribe)."""
    return (SISIMAI / "arf-26.eml").read_bytes()


def test_apple_unsubscribe_button_without_proof_asks_for_confirmation(
    settings: Settings, session_factory: sessionmaker[Session], apple_member: str, resolver: StubResolver
) -> None:
    f = session_factory
    # iCloud's DKIM key is not in the stub DNS: the signature cannot be verified, the From is not proven.
    row_id = spool(f, apple_unsubscribe(), rcpt=REQUEST, sender=APPLE_USER)
    process_pending(settings, f, now=T0, resolver=resolver)
    spooled = row(f, row_id)
    assert spooled.status == "command", spooled.reason
    assert "unsubscribe" in spooled.reason
    assert subscription_status(f, APPLE_USER) == "active", "an unproven From unsubscribes nobody"
    with session_scope(f) as session:
        pending = session.scalar(select(PendingConfirmation).where(PendingConfirmation.email == APPLE_USER))
        assert pending is not None and [c["name"] for c in pending.payload["commands"]] == ["unsubscribe"]
        token = pending.token
    bodies = mails_to(f, APPLE_USER)
    assert len(bodies) == 1 and token in bodies[0], "one mail: the confirmation request"
    with session_scope(f) as session:
        assert confirm_token(session, settings, token, now=T0 + timedelta(minutes=2)).ok
    assert subscription_status(f, APPLE_USER) == "unsubscribed"


def test_apple_unsubscribe_button_with_dkim_unsubscribes_at_once(
    settings: Settings, session_factory: sessionmaker[Session], apple_member: str, resolver: StubResolver
) -> None:
    f = session_factory
    resolver.add_dkim_key("icloud.com")
    spool(f, sign(apple_unsubscribe(), domain="icloud.com"), rcpt=REQUEST, sender=APPLE_USER)
    process_pending(settings, f, now=T0, resolver=resolver)
    assert subscription_status(f, APPLE_USER) == "unsubscribed"
    bodies = mails_to(f, APPLE_USER)
    assert len(bodies) == 1 and "désabonné" in bodies[0]
    assert "Apple Mail sent this email" not in bodies[0], "the button's explanation is not a command line"


@pytest.mark.parametrize("name", ["rfc3834-01.eml", "rfc3834-03.eml"])
def test_real_auto_replies_to_the_request_address_are_still_dropped(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum, resolver: StubResolver, name: str
) -> None:
    f = session_factory
    raw = (SISIMAI / name).read_bytes()
    sender = message_from_bytes(raw, policy=compat32)["From"]
    row_id = spool(f, raw, rcpt=REQUEST, sender=sender)
    process_pending(settings, f, now=T0, resolver=resolver)
    spooled = row(f, row_id)
    assert (spooled.status, spooled.reason.split(":")[0]) == ("dropped", "automatic reply")
    with session_scope(f) as session:
        assert session.scalar(select(OutboxMessage)) is None, "no answer to an auto-reply (RFC 3834)"


@pytest.mark.parametrize("value", ["false", "", "yes please", "true; unsubscribe everyone"])
def test_garbage_apple_unsubscribe_headers_leave_an_auto_reply_an_auto_reply(
    settings: Settings, session_factory: sessionmaker[Session], apple_member: str, resolver: StubResolver,
    value: str,
) -> None:
    f = session_factory
    raw = apple_unsubscribe().replace(b"X-Apple-Unsubscribe: true", b"X-Apple-Unsubscribe: " + value.encode())
    row_id = spool(f, raw, rcpt=REQUEST, sender=APPLE_USER)
    process_pending(settings, f, now=T0, resolver=resolver)
    assert row(f, row_id).status == "dropped"
    assert subscription_status(f, APPLE_USER) == "active"
    assert mails_to(f, APPLE_USER) == []


def test_apple_unsubscribe_header_sent_to_the_posting_address_is_not_posted(
    settings: Settings, session_factory: sessionmaker[Session], apple_member: str, resolver: StubResolver
) -> None:
    f = session_factory
    row_id = spool(f, apple_unsubscribe(), rcpt=LIST, sender=APPLE_USER)
    process_pending(settings, f, now=T0, resolver=resolver)
    assert row(f, row_id).status == "dropped"
    assert subscription_status(f, APPLE_USER) == "active"


# ====================================================================== 2. replayed command mails


def test_a_replayed_dkim_signed_close_does_not_run_again(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum, resolver: StubResolver
) -> None:
    f = session_factory
    spool(f, make_mail())
    process_pending(settings, f, now=T0, resolver=resolver)
    command = sign(make_mail(sender=MOD, sender_name="Modération", subject="Re: Travailleurs frontaliers",
                             message_id="close-1@eurometropole.example", in_reply_to="m1@eurometropole.example",
                             body="#close solved\n"), domain=DOMAIN)
    first = spool(f, command, sender=MOD, now=T0 + timedelta(minutes=1))
    process_pending(settings, f, now=T0 + timedelta(minutes=1), resolver=resolver)
    assert row(f, first).status == "command"
    with session_scope(f) as session:
        topic = session.scalar(select(Topic))
        assert topic is not None and topic.status == "closed"
        # A moderator reopens it on the web.
        topic.status, topic.outcome, topic.closed_at = "open", None, None
        actions = len(session.scalars(select(ModerationAction)).all())
    notices = len(mails_to(f, MOD))
    # Someone who captured the signed mail sends the very same bytes again a week later: DKIM still passes.
    later = T0 + timedelta(days=7)
    replay = spool(f, command, sender=MOD, now=later)
    process_pending(settings, f, now=later, resolver=resolver)
    replayed = row(f, replay)
    assert replayed.status == "duplicate"
    assert replayed.reason == (
        "replayed command mail: Message-ID <close-1@eurometropole.example> was already run as commands for list"
        f" forum (spool row #{first}); not run again"
    )
    assert replayed.raw == command, "the replayed bytes are kept for the operators"
    with session_scope(f) as session:
        topic = session.scalar(select(Topic))
        assert topic is not None and topic.status == "open"
        assert len(session.scalars(select(ModerationAction)).all()) == actions
    assert len(mails_to(f, MOD)) == notices, "a replay is not answered (it would mail the real moderator)"


@pytest.mark.parametrize("message_id", ["unsub-1@eurometropole.example", None], ids=["message-id", "no-message-id"])
def test_a_replayed_dkim_signed_unsubscribe_does_not_run_again(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum, resolver: StubResolver,
    message_id: str | None,
) -> None:
    f = session_factory
    raw = sign(make_mail(to=REQUEST, subject="unsubscribe", body="", message_id=message_id), domain=DOMAIN)
    first = spool(f, raw, rcpt=REQUEST)
    process_pending(settings, f, now=T0, resolver=resolver)
    assert row(f, first).status == "command"
    assert subscription_status(f, AUTHOR) == "unsubscribed"
    with session_scope(f) as session:  # Camille comes back.
        sub = session.scalar(select(Subscription).join(Member).where(Member.email == AUTHOR))
        assert sub is not None
        sub.status = "active"
    replay = spool(f, raw, rcpt=REQUEST, now=T0 + timedelta(hours=3))
    process_pending(settings, f, now=T0 + timedelta(hours=3), resolver=resolver)
    assert row(f, replay).status == "duplicate"
    assert "replayed command mail" in row(f, replay).reason
    assert subscription_status(f, AUTHOR) == "active"


def test_one_envelope_to_two_command_addresses_is_not_a_replay(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum, resolver: StubResolver
) -> None:
    f = session_factory
    raw = make_mail(to=REQUEST, subject="help", body="", message_id="help-1@eurometropole.example")
    rows = spool_for_lists(f, raw, source="smtp", envelope_from=AUTHOR, now=T0,
                           targets=[("forum", [REQUEST]), ("forum", ["forum+digest@forum.test"])])
    process_pending(settings, f, now=T0, resolver=resolver)
    assert [row(f, r).status for r in rows] == ["command", "command"]


# ====================================================================== 3. #commands in the first mail of a topic


NEW_TOPIC = ("#catégorie Santé\n#tag transport\n\nBonjour,\nLes ambulances ne peuvent pas franchir la frontière"
             " pour un transfert urgent. Qui a une convention ?\n")


@pytest.fixture
def health(session_factory: sessionmaker[Session], forum: Forum) -> int:
    """The category Santé, muted by the first reader: who gets a copy depends on the new topic's category."""
    with session_scope(session_factory) as session:
        ml = make_list(session, "forum")
        category = make_category(session, ml, "Santé")
        reader = session.scalar(select(Member).where(Member.email == READERS[0]))
        assert reader is not None
        session.add(CategoryFollow(member_id=reader.id, category_id=category.id, mode="mute", created_at=T0))
        return category.id


def test_moderator_commands_in_the_first_mail_apply_to_the_new_topic(
    settings: Settings, session_factory: sessionmaker[Session], health: int, resolver: StubResolver
) -> None:
    f = session_factory
    raw = sign(make_mail(sender=MOD, sender_name="Modération", subject="Transport sanitaire urgent",
                         message_id="new-1@eurometropole.example", body=NEW_TOPIC), domain=DOMAIN)
    row_id = spool(f, raw, sender=MOD)
    process_pending(settings, f, now=T0, resolver=resolver)
    spooled = row(f, row_id)
    assert spooled.status == "done", spooled.reason
    assert "commands: category, tag (on the new topic)" in spooled.reason
    with session_scope(f) as session:
        topic = session.scalar(select(Topic))
        assert topic is not None and topic.subject == "Transport sanitaire urgent"
        assert topic.category_id == health and [t.name for t in topic.tags] == ["transport"]
        message = session.scalar(select(Message))
        assert message is not None and message.topic_id == topic.id
        assert message.body_text.startswith("Bonjour,\nLes ambulances") and "#" not in message.body_text
        assert message.body_edited
        actions = [a for (a,) in session.execute(select(ModerationAction.action).order_by(ModerationAction.id))]
        assert actions == ["category", "tag"]
        copies = sorted(session.scalars(select(OutboxMessage.recipient).where(OutboxMessage.kind == "post")))
    # The category was set before the copies were addressed: the reader who muted Santé gets none.
    assert copies == sorted([AUTHOR, *READERS[1:]])
    replies = mails_to(f, MOD, kind="notice")
    assert len(replies) == 1 and "Santé" in replies[0] and "transport" in replies[0]


def test_unproven_commands_in_the_first_mail_wait_for_confirmation_then_apply_to_that_topic(
    settings: Settings, session_factory: sessionmaker[Session], health: int, resolver: StubResolver
) -> None:
    f = session_factory
    raw = make_mail(sender=MOD, sender_name="Modération", subject="Transport sanitaire urgent",
                    message_id="new-2@eurometropole.example", body=NEW_TOPIC)
    row_id = spool(f, raw, sender=MOD)
    # A second topic is created meanwhile: the confirmation must not land on "the latest topic".
    spool(f, make_mail(subject="Autre question", message_id="other@eurometropole.example"),
          now=T0 + timedelta(minutes=1))
    process_pending(settings, f, now=T0 + timedelta(minutes=1), resolver=resolver)
    spooled = row(f, row_id)
    assert spooled.status == "done" and "awaiting confirmation" in spooled.reason
    with session_scope(f) as session:
        topic_id = session.scalar(select(Message.topic_id).where(Message.message_id == "new-2@eurometropole.example"))
        topic = session.get(Topic, topic_id)
        assert topic is not None and topic.category_id is None and topic.tags == []
        message = session.scalar(select(Message).where(Message.topic_id == topic_id))
        assert message is not None and "#tag" not in message.body_text
        pending = session.scalar(select(PendingConfirmation).where(PendingConfirmation.email == MOD))
        assert pending is not None and pending.payload["topic_id"] == topic_id
        token = pending.token
    confirmation = mails_to(f, MOD)
    assert len(confirmation) == 1 and "#tag transport" in confirmation[0]
    with session_scope(f) as session:
        assert confirm_token(session, settings, token, now=T0 + timedelta(minutes=5)).ok
    with session_scope(f) as session:
        topic = session.get(Topic, topic_id)
        assert topic is not None and topic.category_id == health and [t.name for t in topic.tags] == ["transport"]
        other = session.scalar(select(Topic).where(Topic.subject == "Autre question"))
        assert other is not None and other.category_id is None and other.tags == []


def test_a_member_cannot_classify_the_topic_they_open(
    settings: Settings, session_factory: sessionmaker[Session], health: int, resolver: StubResolver
) -> None:
    f = session_factory
    row_id = spool(f, sign(make_mail(body=NEW_TOPIC, message_id="new-3@eurometropole.example"), domain=DOMAIN))
    process_pending(settings, f, now=T0, resolver=resolver)
    assert row(f, row_id).status == "done"
    with session_scope(f) as session:
        topic = session.scalar(select(Topic))
        assert topic is not None and topic.category_id is None and topic.tags == []
        message = session.scalar(select(Message))
        assert message is not None and message.body_text.startswith("#catégorie Santé"), "the lines stay as text"
    assert any("Seuls les modérateurs" in body for body in mails_to(f, AUTHOR, kind="notice"))


# ====================================================================== 6. cross-posted messages


def test_a_cross_post_is_archived_once_and_the_second_row_says_where(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum, resolver: StubResolver
) -> None:
    f = session_factory
    with session_scope(f) as session:
        dev = make_list(session, "forum-dev", title="Forum des développeurs")
        make_member(session, AUTHOR, mailing_list=dev)
    raw = make_mail(to=f"{LIST}, forum-dev@forum.test")
    first, second = spool_for_lists(f, raw, source="smtp", envelope_from=AUTHOR, now=T0,
                                    targets=[("forum", [LIST]), ("forum-dev", ["forum-dev@forum.test"])])
    process_pending(settings, f, now=T0, resolver=resolver)
    assert row(f, first).status == "done"
    with session_scope(f) as session:
        message = session.scalar(select(Message))
        assert message is not None
        message_pk, topic_id = message.id, message.topic_id
    duplicate = row(f, second)
    assert duplicate.status == "duplicate"
    assert duplicate.reason.startswith(
        f"Message-ID <m1@eurometropole.example> already archived in list forum (message #{message_pk},"
        f" topic #{topic_id})"
    )
    assert duplicate.raw == raw and duplicate.list_name == "forum-dev", "nothing of the second copy is lost"
