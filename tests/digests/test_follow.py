"""A digest-mode member who follows a topic (or its category) gets that topic's messages at once, as they
arrive, and not a second time in the digest; what did not reach them at once (posted before they followed)
still comes in the digest. Never twice, never lost. Real ingest, real relay (aiosmtpd), fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digests.content import collect_activity, digest_messages, for_member
from digests.jobs import send_due_digests
from gateway.delivery import deliver_pending
from gateway.inbound import spool_message
from gateway.worker import process_pending
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.models import Category, CategoryFollow, MailingList, Member, Topic, TopicFollow
from tests.factories import make_category, make_list, make_member
from tests.gateway.conftest import make_mail
from tests.smtp_sink import SmtpSink

AUTHOR = "camille.martin@eurometropole.example"
READER = "digest.reader@example.org"
LIST = "forum@forum.test"
DAY = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
DUE = datetime(2026, 11, 3, 6, 30, tzinfo=UTC)  # after 07:00 in Paris on the 3rd


def at(hour: int) -> datetime:
    return DAY.replace(hour=hour)


@pytest.fixture
def forum(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as s:
        ml = make_list(s, now=DAY)
        make_category(s, ml, "Transports", now=DAY)
        make_member(s, AUTHOR, name="Camille Martin", mailing_list=ml, now=DAY)
        make_member(s, READER, mailing_list=ml, mode="daily", now=DAY)


def _post(settings: Settings, factory: sessionmaker[Session], n: str, body: str, *, when: datetime,
          subject: str = "", reply_to: str | None = None) -> None:
    raw = make_mail(subject=subject or f"Re: sujet {n}", message_id=f"{n}@eurometropole.example",
                    in_reply_to=f"{reply_to}@eurometropole.example" if reply_to else None, body=body, date=when)
    spool_message(factory, raw, source="smtp", envelope_from=AUTHOR, envelope_to=[LIST], list_name="forum",
                  now=when)
    assert process_pending(settings, factory, now=when) == 1
    deliver_pending(settings, factory, now=when)


def _topic_id(session: Session, subject: str) -> int:
    return session.scalars(select(Topic.id).where(Topic.subject == subject)).one()


def _reader_id(session: Session) -> int:
    return session.scalars(select(Member.id).where(Member.email == READER)).one()


def _follow(factory: sessionmaker[Session], subject: str, when: datetime) -> None:
    with session_scope(factory) as s:
        s.add(TopicFollow(member_id=_reader_id(s), topic_id=_topic_id(s, subject), mode="follow", created_at=when))


def _instant_bodies(sink: SmtpSink) -> list[str]:
    out = []
    for rcpt, received in sink.deliveries():
        msg = message_from_bytes(received.data, policy=policy.default)
        # A copy of a post names its message (RFC 5064 Archived-At); a digest names none.
        if rcpt == READER and msg["Archived-At"]:
            out.append(msg.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    return out


def _digest_text(settings: Settings, factory: sessionmaker[Session], sink: SmtpSink) -> str:
    sink.clear()
    result = send_due_digests(settings, factory, now=DUE)
    assert result.sent == 1
    deliver_pending(settings, factory, now=DUE)
    (received,) = [r for rcpt, r in sink.deliveries() if rcpt == READER]
    msg = message_from_bytes(received.data, policy=policy.default)
    return msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_a_followed_topic_comes_at_once_and_not_again_in_the_digest(
    forum: None, settings: Settings, session_factory: sessionmaker[Session], smtp_sink: SmtpSink
) -> None:
    _post(settings, session_factory, "a1", "Premier message sur les navettes.\n", when=at(8),
          subject="Navettes transfrontalières")
    _post(settings, session_factory, "b1", "Une question sur les crèches.\n", when=at(9),
          subject="Crèches frontalières")
    _follow(session_factory, "Navettes transfrontalières", at(10))
    _post(settings, session_factory, "a2", "Deuxième message : horaires du soir.\n", when=at(11),
          subject="Re: Navettes transfrontalières", reply_to="a1")
    _post(settings, session_factory, "a3", "Troisième message : tarifs.\n", when=at(12),
          subject="Re: Navettes transfrontalières", reply_to="a2")

    instant = _instant_bodies(smtp_sink)
    assert len(instant) == 2
    assert "horaires du soir" in instant[0] and "tarifs" in instant[1]

    digest = _digest_text(settings, session_factory, smtp_sink)
    # The unfollowed topic is in the digest; so is the followed topic's message posted before the follow
    # (it never reached the member); the two sent at once are not repeated.
    assert "Crèches frontalières" in digest and "Une question sur les crèches" in digest
    assert "Navettes transfrontalières" in digest and "Premier message sur les navettes" in digest
    assert "horaires du soir" not in digest and "tarifs" not in digest


def test_a_followed_category_counts_the_same(
    forum: None, settings: Settings, session_factory: sessionmaker[Session], smtp_sink: SmtpSink
) -> None:
    _post(settings, session_factory, "c1", "Covoiturage : qui est intéressé ?\n", when=at(10),
          subject="Covoiturage")
    with session_scope(session_factory) as s:
        # Filing the topic in "Transports" (as a moderator would), which the member follows.
        transports = s.scalars(select(Category).where(Category.name == "Transports")).one()
        s.get(Topic, _topic_id(s, "Covoiturage")).category_id = transports.id
        s.add(CategoryFollow(member_id=_reader_id(s), category_id=transports.id, mode="follow",
                             created_at=at(11)))
    _post(settings, session_factory, "c2", "Moi, depuis Kehl.\n", when=at(13), subject="Re: Covoiturage",
          reply_to="c1")

    (instant,) = _instant_bodies(smtp_sink)
    assert "depuis Kehl" in instant
    digest = _digest_text(settings, session_factory, smtp_sink)
    assert "Covoiturage : qui est intéressé" in digest and "depuis Kehl" not in digest


def test_a_topic_whose_every_new_message_came_at_once_is_left_out(
    forum: None, settings: Settings, session_factory: sessionmaker[Session], smtp_sink: SmtpSink
) -> None:
    # Started the day before, followed since; today's messages all reached the member at once.
    _post(settings, session_factory, "a1", "Premier message sur les navettes.\n", when=at(8) - timedelta(days=1),
          subject="Navettes transfrontalières")
    _follow(session_factory, "Navettes transfrontalières", at(9) - timedelta(days=1))
    _post(settings, session_factory, "a2", "Deuxième message : horaires.\n", when=at(11),
          subject="Re: Navettes transfrontalières", reply_to="a1")
    _post(settings, session_factory, "a3", "Troisième message : tarifs.\n", when=at(12),
          subject="Re: Navettes transfrontalières", reply_to="a2")
    _post(settings, session_factory, "b1", "Une question sur les crèches.\n", when=at(9),
          subject="Crèches frontalières")
    assert len(_instant_bodies(smtp_sink)) == 2

    digest = _digest_text(settings, session_factory, smtp_sink)
    assert "Crèches frontalières" in digest
    assert "Navettes" not in digest and "horaires" not in digest and "tarifs" not in digest

    # for_member itself: with nothing delivered the topic is whole; with its newest message delivered, the
    # older one takes its place (read with ``load``); with both, the topic is gone.
    with session_scope(session_factory) as s:
        ml = s.scalars(select(MailingList)).one()
        activity = collect_activity(s, ml, at(0), DUE, messages_per_topic=1)
        topic = next(t for t in activity.topics if t.subject == "Navettes transfrontalières")
        assert topic.new_count == 2 and len(topic.messages) == 1
        newest, older = topic.message_pks
        whole = for_member(activity, muted_topics=())
        assert topic in whole.topics
        partial = for_member(activity, muted_topics=(), delivered={newest},
                             load=lambda pks: digest_messages(s, pks))
        kept = next(t for t in partial.topics if t.topic_id == topic.topic_id)
        assert kept.new_count == 1 and [m.excerpt for m in kept.messages] == ["Deuxième message : horaires."]
        gone = for_member(activity, muted_topics=(), delivered={newest, older})
        assert [t.subject for t in gone.topics] == ["Crèches frontalières"]
