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

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session, lazyload

from passerelle.mail.subject import FORWARD_PREFIXES, subject_key
from passerelle.mail.threading import Threader
from passerelle.models import Message, ThreadRef, Topic

from .context import MailContext
from .handlers.post import keep_loaded

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


# Statements built once: placement runs them for every post.
_REFS, _TOPICS, _MESSAGES = ThreadRef.__table__, Topic.__table__, Message.__table__
# Every id asked about that the archive has seen, whatever its list: its topic, the topic's list, and the
# archived message's pk when it is not a ghost. The post handler then knows which ids are new (ghosts to
# record) and the parent's pk without asking again.
_REFS_FOR_IDS = (
    select(_REFS.c.message_id, _REFS.c.topic_id, _TOPICS.c.list_id, _MESSAGES.c.id)
    .select_from(_REFS)
    .outerjoin(_TOPICS, _TOPICS.c.id == _REFS.c.topic_id)
    .outerjoin(_MESSAGES, _MESSAGES.c.message_id == _REFS.c.message_id)
    .where(_REFS.c.message_id.in_(bindparam("ids", expanding=True)))
)
_TOPIC_FOR_SUBJECT = (
    select(_TOPICS.c.id)
    .where(
        _TOPICS.c.list_id == bindparam("list_id"),
        _TOPICS.c.normalized_subject == bindparam("key"),
        _TOPICS.c.last_post_at >= bindparam("since", type_=_TOPICS.c.last_post_at.type),
    )
    .order_by(_TOPICS.c.last_post_at.desc(), _TOPICS.c.id.desc())
    .limit(1)
)
_MESSAGE_PK = select(_MESSAGES.c.id).where(_MESSAGES.c.message_id == bindparam("message_id"))


class DbThreadIndex:
    """The ThreadIndex protocol over one list's ThreadRef/Topic rows (two indexed queries at most)."""

    def __init__(self, session: Session, list_id: int) -> None:
        self.session = session
        self.list_id = list_id
        # What topic_for_ids learnt: the ids asked about, and (topic, list, message pk) of those seen.
        self.asked: set[str] = set()
        self.seen: dict[str, tuple[int, int | None, int | None]] = {}

    def topic_for_ids(self, ids: list[str]) -> dict[str, Hashable]:
        if not ids:
            return {}
        for message_id, topic_id, list_id, message_pk in self.session.execute(_REFS_FOR_IDS, {"ids": ids}):
            self.seen[str(message_id)] = (topic_id, list_id, message_pk)
        self.asked.update(ids)
        return {i: self.seen[i][0] for i in ids if i in self.seen and self.seen[i][1] == self.list_id}

    def topic_for_subject(self, normalized_subject: str, since: datetime) -> Hashable | None:
        key = subject_key(normalized_subject)[:500]
        if not key:
            return None
        return self.session.scalar(_TOPIC_FOR_SUBJECT, {"list_id": self.list_id, "key": key, "since": since})


@dataclass(frozen=True)
class Placement:
    """The topic a post joins (None: a new topic) and its parent message's pk when it is archived."""

    topic: Topic | None
    parent_pk: int | None
    parent_message_id: str | None
    rule: str
    # The Message-IDs placement looked up, and those of them the archive has seen (real or ghost, any list):
    # the post handler records thread refs for the others without asking again.
    looked_up: frozenset[str] = frozenset()
    seen: frozenset[str] = frozenset()


_TOPIC_ALONE = [lazyload(Topic.tags), lazyload(Topic.category)]


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
    index = DbThreadIndex(session, ctx.mailing_list.id)
    threader = Threader(
        index,
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
    # Tags and category are loaded only if someone reads them (Topic.tags is selectin by default: one more
    # query; the category a join).
    topic = (
        session.get(Topic, placed.topic_key, options=_TOPIC_ALONE) if placed.topic_key is not None else None
    )
    if topic is not None:
        topic = _follow_merges(session, topic)
        keep_loaded(session, topic)
    parent_pk = None
    if placed.parent_message_id:
        if placed.parent_message_id in index.seen:
            parent_pk = index.seen[placed.parent_message_id][2]
        else:
            parent_pk = session.scalar(_MESSAGE_PK, {"message_id": placed.parent_message_id})
    return Placement(
        topic=topic, parent_pk=parent_pk, parent_message_id=placed.parent_message_id, rule=placed.reason,
        looked_up=frozenset(index.asked), seen=frozenset(index.seen),
    )


__all__ = ["DbThreadIndex", "Placement", "place_message"]
