"""What goes into a digest: the topics with activity in a period, grouped by category and by status.

The activity of one list in one window is collected once (:func:`collect_activity`) and shared by every
subscriber with the same window (same time zone); :func:`for_member` then drops what the member muted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from passerelle.models import CategoryFollow, Escalation, MailingList, Message, Topic, TopicFollow

log = logging.getLogger(__name__)

# Order of the status groups inside each category (issue #6: new obstacles, answered, closed, escalated).
STATUS_GROUPS = ("new", "answered", "closed", "escalated")
# Longest excerpt of one message, in characters; the full text is one click away.
EXCERPT_CHARS = 1200


@dataclass(frozen=True)
class DigestMessage:
    message_id: str
    author: str
    date: datetime
    excerpt: str
    truncated: bool


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


@dataclass
class Activity:
    """Everything that happened on one list in [since, until)."""

    list_id: int
    since: datetime
    until: datetime
    topics: list[DigestTopic]


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

    shown_ids = [m.id for msgs in per_topic.values() for m in msgs[:messages_per_topic]]
    texts: dict[int, Message] = {}
    if shown_ids:
        for m in session.scalars(
            select(Message)
            .where(Message.id.in_(shown_ids))
            .options(undefer(Message.new_text), undefer(Message.body_text))
        ):
            texts[m.id] = m

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
            group = "new"
        elif window_messages:
            group = "answered"
        else:
            continue
        shown = []
        for m in reversed(window_messages[:messages_per_topic]):
            text, cut = excerpt(_new_part(texts[m.id]))
            shown.append(DigestMessage(m.message_id, m.from_name or m.from_addr, m.date, text, cut))
        newest = window_messages[0].message_id if window_messages else _newest_message_id(session, topic.id)
        result.append(
            DigestTopic(
                topic_id=topic.id,
                subject=topic.subject,
                category_id=topic.category_id,
                category_name=topic.category.name if topic.category else "",
                group=group,
                new_count=len(window_messages),
                messages=shown,
                outcome=topic.outcome,
                escalation_level=topic.escalation_level,
                reply_to_message_id=newest,
            )
        )
    result.sort(key=lambda t: (STATUS_GROUPS.index(t.group), t.subject.casefold(), t.topic_id))
    return Activity(mailing_list.id, since, until, result)


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
    muted_categories: Iterable[int] = (),
) -> DigestContent:
    """The digest of one member: ``activity`` without muted topics and topics of muted categories
    (unless the member follows that very topic)."""
    muted_t, followed_t, muted_c = set(muted_topics), set(followed_topics), set(muted_categories)
    kept = [
        t for t in activity.topics
        if t.topic_id not in muted_t and (t.category_id not in muted_c or t.topic_id in followed_t)
    ]
    return DigestContent(activity.since, activity.until, kept)
