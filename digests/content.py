"""What goes into a digest: the topics with activity in a period, grouped by category and by status.

The activity of one list in one window is collected once (:func:`collect_activity`) and shared by every
subscriber with the same window (same time zone); :func:`for_member` then drops what the member muted, and
what already reached the member at once: a digest-mode member who follows a topic (or its category) gets
its messages as they arrive (gateway.recipients) and does not want them again in the digest, as on
Discourse where watching a topic mails each post and the summary leaves them out. What was sent is read from
the outbox (:func:`delivered_for`), not from the follows of the moment, so a message posted before the
member followed the topic is still in the digest: every message reaches the member once, never twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from passerelle.models import (
    CategoryFollow,
    Escalation,
    MailingList,
    Message,
    OutboxMessage,
    Sheet,
    Topic,
    TopicFollow,
)

log = logging.getLogger(__name__)

# Order of the status groups inside each category (issue #6: new obstacles, answered, closed, escalated).
# A new topic is an obstacle, or a good practice, only once a moderator has said so by making a sheet of
# that kind from it (``#sheet``, passerelle.models.sheet.KINDS); until then it is a new topic, whatever it
# turns out to be ("new"), so that a good practice is never announced as an obstacle.
STATUS_GROUPS = ("new_obstacle", "new_practice", "new", "answered", "closed", "escalated")
_NEW_GROUP_OF_KIND = {"obstacle": "new_obstacle", "practice": "new_practice"}
# Longest excerpt of one message, in characters; the full text is one click away.
EXCERPT_CHARS = 1200


@dataclass(frozen=True)
class DigestMessage:
    message_id: str
    author: str
    date: datetime
    excerpt: str
    truncated: bool
    # The archive's primary key of the message.
    pk: int = 0


@dataclass
class DigestTopic:
    topic_id: int
    subject: str
    category_id: int | None
    category_name: str
    group: str
    # Messages received in the window (all of them, even those not shown).
    new_count: int
    # The newest messages of the window (at most messages_per_topic), oldest first.
    messages: list[DigestMessage] = field(default_factory=list)
    outcome: str | None = None
    escalation_level: str | None = None
    # The Message-ID a reply should point at (In-Reply-To): the newest message of the topic we know.
    reply_to_message_id: str = ""
    # Primary keys of all the messages received in the window, newest first (new_count of them).
    message_pks: tuple[int, ...] = ()


@dataclass
class Activity:
    """Everything that happened on one list in [since, until)."""

    list_id: int
    since: datetime
    until: datetime
    topics: list[DigestTopic]
    messages_per_topic: int = 0


@dataclass
class DigestContent:
    since: datetime
    until: datetime
    topics: list[DigestTopic]

    @property
    def message_count(self) -> int:
        return sum(t.new_count for t in self.topics)

    @property
    def is_empty(self) -> bool:
        return not self.topics

    def grouped(self) -> list[tuple[str, list[tuple[str, list[DigestTopic]]]]]:
        """[(category name, [(status group, [topics])])]; categories by name, uncategorised ("") last."""
        by_category: dict[str, dict[str, list[DigestTopic]]] = {}
        for topic in self.topics:
            by_category.setdefault(topic.category_name, {}).setdefault(topic.group, []).append(topic)
        ordered = sorted(by_category, key=lambda name: (name == "", name.casefold()))
        return [
            (name, [(g, by_category[name][g]) for g in STATUS_GROUPS if g in by_category[name]])
            for name in ordered
        ]


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> tuple[str, bool]:
    """``text`` cut at a word boundary under ``limit`` characters; (text, was it cut)."""
    text = text.strip()
    if len(text) <= limit:
        return text, False
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip() + " […]", True


def _new_part(message: Message) -> str:
    """The message without quoted text and signature.

    Ingest stores that part in ``new_text`` (quote trimming happens once, at ingest); older rows or
    imports may lack it, then the trimmer runs here on the archived body.
    """
    if message.new_text and message.new_text.strip():
        return message.new_text
    from passerelle.mail.quotes import split_reply

    return split_reply(message.body_text or "").new_text


def _in_window(value: datetime | None, since: datetime, until: datetime) -> bool:
    return value is not None and since <= value < until


def collect_activity(
    session: Session, mailing_list: MailingList, since: datetime, until: datetime, *, messages_per_topic: int
) -> Activity:
    """Topics of ``mailing_list`` with messages received, or closed or escalated, in [since, until)."""
    if since >= until:
        raise ValueError(f"empty digest window: {since.isoformat()} >= {until.isoformat()}")
    messages = session.scalars(
        select(Message)
        .join(Topic, Topic.id == Message.topic_id)
        .where(Topic.list_id == mailing_list.id, Message.received_at >= since, Message.received_at < until)
        .order_by(Message.received_at.desc(), Message.id.desc())
    ).all()
    per_topic: dict[int, list[Message]] = {}
    for message in messages:
        per_topic.setdefault(message.topic_id, []).append(message)

    escalated_ids = set(
        session.scalars(
            select(Escalation.topic_id)
            .join(Topic, Topic.id == Escalation.topic_id)
            .where(Topic.list_id == mailing_list.id, Escalation.escalated_at >= since, Escalation.escalated_at < until)
        )
    )
    closed_ids = set(
        session.scalars(
            select(Topic.id).where(
                Topic.list_id == mailing_list.id, Topic.status == "closed",
                Topic.closed_at >= since, Topic.closed_at < until,
            )
        )
    )
    topic_ids = set(per_topic) | escalated_ids | closed_ids
    if not topic_ids:
        return Activity(mailing_list.id, since, until, [])
    topics = session.scalars(select(Topic).where(Topic.id.in_(topic_ids))).all()
    kinds = topic_kinds(session, topic_ids)

    shown = digest_messages(session, [m.id for msgs in per_topic.values() for m in msgs[:messages_per_topic]])

    result: list[DigestTopic] = []
    for topic in topics:
        if topic.merged_into_id is not None:
            # Merged topics live on in the topic they were merged into; their messages were moved there.
            continue
        window_messages = per_topic.get(topic.id, [])
        if topic.status == "closed" and _in_window(topic.closed_at, since, until):
            group = "closed"
        elif topic.id in escalated_ids:
            group = "escalated"
        elif _in_window(topic.created_at, since, until):
            group = _NEW_GROUP_OF_KIND.get(kinds.get(topic.id, ""), "new")
        elif window_messages:
            group = "answered"
        else:
            continue
        newest = window_messages[0].message_id if window_messages else _newest_message_id(session, topic.id)
        result.append(
            DigestTopic(
                topic_id=topic.id,
                subject=topic.subject,
                category_id=topic.category_id,
                category_name=topic.category.name if topic.category else "",
                group=group,
                new_count=len(window_messages),
                messages=[shown[m.id] for m in reversed(window_messages[:messages_per_topic])],
                outcome=topic.outcome,
                escalation_level=topic.escalation_level,
                reply_to_message_id=newest,
                message_pks=tuple(m.id for m in window_messages),
            )
        )
    result.sort(key=lambda t: (STATUS_GROUPS.index(t.group), t.subject.casefold(), t.topic_id))
    return Activity(mailing_list.id, since, until, result, messages_per_topic)


def topic_kinds(session: Session, topic_ids: Iterable[int]) -> dict[int, str]:
    """What moderators classified each of ``topic_ids`` as: the kind ("obstacle" or "practice") of the
    newest sheet made from the topic, draft or published; topics without a sheet are left out."""
    ids = list(topic_ids)
    kinds: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        for topic_id, kind in session.execute(
            select(Sheet.topic_id, Sheet.kind)
            .where(Sheet.topic_id.in_(ids[start : start + 500]))
            .order_by(Sheet.id)
        ):
            if topic_id is not None:
                kinds[topic_id] = kind
    return kinds


def digest_messages(session: Session, pks: Iterable[int]) -> dict[int, DigestMessage]:
    """The digest's view (author, date, excerpt of the new part) of the messages ``pks``, by primary key."""
    ids = list(pks)
    if not ids:
        return {}
    out = {}
    for m in session.scalars(
        select(Message).where(Message.id.in_(ids)).options(undefer(Message.new_text), undefer(Message.body_text))
    ):
        text, cut = excerpt(_new_part(m))
        out[m.id] = DigestMessage(m.message_id, m.from_name or m.from_addr, m.date, text, cut, m.id)
    return out


def delivered_for(session: Session, activity: Activity, email: str) -> set[int]:
    """The messages of ``activity`` already sent (or on their way) to ``email`` as instant copies: a copy the
    relay refused for good did not reach the member, and stays in the digest."""
    pks = [pk for topic in activity.topics for pk in topic.message_pks]
    delivered: set[int] = set()
    # In slices: a weekly digest of a busy list may name more messages than a statement takes parameters.
    for start in range(0, len(pks), 500):
        delivered.update(
            session.scalars(
                select(OutboxMessage.message_pk).where(
                    OutboxMessage.message_pk.in_(pks[start : start + 500]),
                    OutboxMessage.recipient == email.lower(),
                    OutboxMessage.kind == "post",
                    OutboxMessage.status != "failed",
                )
            )
        )
    return delivered


def _newest_message_id(session: Session, topic_id: int) -> str:
    return (
        session.scalar(
            select(Message.message_id)
            .where(Message.topic_id == topic_id)
            .order_by(Message.received_at.desc(), Message.id.desc())
            .limit(1)
        )
        or ""
    )


def muted_for(session: Session, member_id: int) -> tuple[set[int], set[int], set[int]]:
    """(muted topic ids, followed topic ids, muted category ids) of one member."""
    muted_topics: set[int] = set()
    followed_topics: set[int] = set()
    for topic_id, mode in session.execute(
        select(TopicFollow.topic_id, TopicFollow.mode).where(TopicFollow.member_id == member_id)
    ):
        (muted_topics if mode == "mute" else followed_topics).add(topic_id)
    muted_categories = set(
        session.scalars(
            select(CategoryFollow.category_id).where(
                CategoryFollow.member_id == member_id, CategoryFollow.mode == "mute"
            )
        )
    )
    return muted_topics, followed_topics, muted_categories


def for_member(
    activity: Activity, *, muted_topics: Iterable[int], followed_topics: Iterable[int] = (),
    muted_categories: Iterable[int] = (), delivered: Iterable[int] = (),
    load: Callable[[list[int]], Mapping[int, DigestMessage]] | None = None,
) -> DigestContent:
    """The digest of one member: ``activity`` without muted topics and topics of muted categories
    (unless the member follows that very topic), and without the messages ``delivered`` to the member at
    once (:func:`delivered_for`). A topic whose every message of the window was delivered is left out,
    unless it was closed or escalated in the window (news no message carried). ``load`` reads the excerpts
    of older messages that now take the place of delivered ones (:func:`digest_messages`)."""
    muted_t, followed_t, muted_c = set(muted_topics), set(followed_topics), set(muted_categories)
    sent = set(delivered)
    kept = []
    for topic in activity.topics:
        if topic.topic_id in muted_t or (topic.category_id in muted_c and topic.topic_id not in followed_t):
            continue
        if sent and not sent.isdisjoint(topic.message_pks):
            topic = _without(topic, sent, activity.messages_per_topic or len(topic.messages), load)
            if not topic.new_count and topic.group not in ("closed", "escalated"):
                continue
        kept.append(topic)
    return DigestContent(activity.since, activity.until, kept)


def _without(
    topic: DigestTopic, sent: set[int], limit: int, load: Callable[[list[int]], Mapping[int, DigestMessage]] | None
) -> DigestTopic:
    """``topic`` without the messages in ``sent``; the newest ``limit`` of the others shown."""
    left = tuple(pk for pk in topic.message_pks if pk not in sent)
    wanted = left[:limit]
    known = {m.pk: m for m in topic.messages}
    missing = [pk for pk in wanted if pk not in known]
    if missing and load is not None:
        known.update(load(missing))
    messages = [known[pk] for pk in reversed(wanted) if pk in known]
    return replace(topic, new_count=len(left), messages=messages, message_pks=left)
