"""Thread placement against the database: passerelle.mail.threading.Threader over ThreadRef and Topic rows.

Every Message-ID the archive has seen, real or ghost, has a ThreadRef naming its topic (the post handler
writes them); subjects are matched on Topic.normalized_subject (subject_key: prefixes stripped, case-folded)
among topics of the same list active within lists.subject_thread_window_days.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session, lazyload

from passerelle.mail.subject import FORWARD_PREFIXES, subject_key
from passerelle.mail.threading import Threader
from passerelle.models import Message, ThreadRef, Topic

from .context import MailContext

# A forward prefix at the start, after any list tags ("TR: ", "[forum] Fwd: ", "WG: "). The issue asks that
# forwards join the thread of their subject like replies do: on a forum, "TR: <topic>" is someone bringing
# the discussion back, not a new question.
_FORWARD_START = re.compile(
    r"\s*(?:\[[^\]]*\]\s*)*(?:"
    + "|".join(re.escape(p) for p in sorted(FORWARD_PREFIXES, key=len, reverse=True))
    + r")\s*(?:\[[^\]]*\]|\(\d+\))?\s*\.?\s*[:：]",
    re.IGNORECASE,
)

# A chain of merged topics longer than this is a data error: stop following it.
MAX_MERGE_HOPS = 10


class DbThreadIndex:
    """The ThreadIndex protocol over one list's ThreadRef/Topic rows (two indexed queries at most)."""

    def __init__(self, session: Session, list_id: int) -> None:
        self.session = session
        self.list_id = list_id

    def topic_for_ids(self, ids: list[str]) -> dict[str, Hashable]:
        if not ids:
            return {}
        rows = self.session.execute(
            select(ThreadRef.message_id, ThreadRef.topic_id)
            .join(Topic, Topic.id == ThreadRef.topic_id)
            .where(ThreadRef.message_id.in_(ids), Topic.list_id == self.list_id)
        ).all()
        return {str(message_id): topic_id for message_id, topic_id in rows}

    def topic_for_subject(self, normalized_subject: str, since: datetime) -> Hashable | None:
        key = subject_key(normalized_subject)[:500]
        if not key:
            return None
        return self.session.scalar(
            select(Topic.id)
            .where(Topic.list_id == self.list_id, Topic.normalized_subject == key, Topic.last_post_at >= since)
            .order_by(Topic.last_post_at.desc(), Topic.id.desc())
            .limit(1)
        )


@dataclass(frozen=True)
class Placement:
    """The topic a post joins (None: a new topic) and its parent message's pk when it is archived."""

    topic: Topic | None
    parent_pk: int | None
    parent_message_id: str | None
    rule: str


def _follow_merges(session: Session, topic: Topic) -> Topic:
    hops = 0
    while topic.merged_into_id is not None and hops < MAX_MERGE_HOPS:
        target = session.get(Topic, topic.merged_into_id)
        if target is None:
            break
        topic = target
        hops += 1
    return topic


# pg_advisory_xact_lock(namespace, list id): one placing transaction per list at a time (see place_message).
PG_PLACEMENT_LOCK = 0x7061_7373  # "pass"


def place_message(ctx: MailContext) -> Placement:
    session = ctx.session
    if session.get_bind().dialect.name == "postgresql":
        # Several workers on PostgreSQL: a reply and its parent placed at the same time would each miss the
        # other (neither committed yet) and open two topics, or one would read the other's thread refs
        # half-way (READ COMMITTED) and split the thread. Placement and the post's writes are serialised
        # per list until commit; parsing and the rules still run in parallel. SQLite writers are serialised
        # by BEGIN IMMEDIATE already.
        session.execute(
            text("SELECT pg_advisory_xact_lock(:namespace, :list_id)"),
            {"namespace": PG_PLACEMENT_LOCK, "list_id": ctx.mailing_list.id},
        )
    threader = Threader(
        DbThreadIndex(session, ctx.mailing_list.id),
        subject_window=timedelta(days=int(ctx.settings.lists.subject_thread_window_days)),
    )
    parsed = ctx.parsed
    placed = threader.place(
        parsed.message_id,
        parsed.in_reply_to,
        parsed.references,
        parsed.normalized_subject,
        parsed.date or ctx.now,
        subject_is_reply=parsed.subject_is_reply or bool(_FORWARD_START.match(parsed.subject)),
    )
    # Tags are loaded only if someone reads them (Topic.tags is selectin by default: one more query).
    topic = (
        session.get(Topic, placed.topic_key, options=[lazyload(Topic.tags)]) if placed.topic_key is not None else None
    )
    if topic is not None:
        topic = _follow_merges(session, topic)
    parent_pk = None
    if placed.parent_message_id:
        parent_pk = session.scalar(select(Message.id).where(Message.message_id == placed.parent_message_id))
    return Placement(topic=topic, parent_pk=parent_pk, parent_message_id=placed.parent_message_id, rule=placed.reason)


__all__ = ["DbThreadIndex", "Placement", "place_message"]
