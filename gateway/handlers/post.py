"""Archive a post and fan it out: Message, Topic, ThreadRefs, Attachments, search index, outbox rows.

All in the worker's transaction, the one that marks the spool row done: either the message is archived
and every copy queued, or nothing is and the row is retried. Outbox rows are unique per (dedupe_key,
recipient) with dedupe_key "post:<message pk>", so no rerun can queue a copy twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Update, bindparam, insert, inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from gateway.context import MailContext
from gateway.recipients import queue_post_copies
from passerelle.mail.quotes import split_reply
from passerelle.mail.subject import normalize_subject, subject_key
from passerelle.models import Attachment, Message, ThreadRef, Topic
from passerelle.search import index_message

from . import Outcome

if TYPE_CHECKING:
    from gateway.threadindex import Placement

log = logging.getLogger(__name__)

NO_SUBJECT = "(no subject)"


# Statements built once (the ingest hot path runs them for every post): plain table statements, so that
# nothing is compiled or loaded into ORM objects per message.
_MESSAGES = Message.__table__
_REFS = ThreadRef.__table__
_FIND_DUPLICATE = select(_MESSAGES.c.id).where(_MESSAGES.c.message_id == bindparam("mid"))
_INSERT_MESSAGE = insert(_MESSAGES)
_KNOWN_REFS = select(_REFS.c.message_id).where(_REFS.c.message_id.in_(bindparam("ids", expanding=True)))
_INSERT_REF = insert(_REFS)
_OWN_REF_IS_REAL = (
    update(_REFS).where(_REFS.c.message_id == bindparam("own_id")).values(is_ghost=False, topic_id=bindparam("topic"))
)
_FIRST_AUTHOR = (
    select(_MESSAGES.c.from_addr).where(_MESSAGES.c.topic_id == bindparam("topic")).order_by(_MESSAGES.c.id).limit(1)
)


_WRITES: dict[tuple[str, tuple[str, ...]], Update] = {}


def write_columns(session: Session, obj: Any, **values: Any) -> None:
    """UPDATE the row of ``obj`` (a persistent ORM object with an ``id``) with ``values`` now, and record them
    as its loaded state: what setting the attributes and flushing would do, without the cost of a unit of
    work flush (several times the UPDATE itself), in the ingest hot path."""
    mapper = inspect(obj).mapper
    table = mapper.local_table
    names = tuple(sorted(values))
    statement = _WRITES.get((table.name, names))
    if statement is None:
        columns = {mapper.get_property(name).columns[0]: bindparam(f"new_{name}") for name in names}
        statement = update(table).where(table.c.id == bindparam("row_id")).values(columns)
        _WRITES[(table.name, names)] = statement
    session.execute(statement, {"row_id": obj.id, **{f"new_{name}": value for name, value in values.items()}})
    for name, value in values.items():
        set_committed_value(obj, name, value)


def keep_loaded(session: Session, *objects: Any) -> None:
    """Keep ``objects`` (ORM objects of ``session``) alive as long as the session: a worker's transaction
    processes a batch of posts, which often share a list, a topic, an author; the session's identity map
    holds its objects weakly, so each would otherwise be loaded again by the next post. Only objects
    whose writes go through the ORM (or write_columns) are kept, so they never go stale."""
    kept = session.info.setdefault("passerelle.kept", {})
    kept.update((id(obj), obj) for obj in objects if obj is not None)


def find_duplicate(session: Session, message_id: str) -> int | None:
    """The pk of the archived message with this Message-ID, if any."""
    return session.scalar(_FIND_DUPLICATE, {"mid": message_id})


def _source(inbound_source: str) -> str:
    kind = (inbound_source or "smtp").split(":", 1)[0]
    return kind if kind in ("smtp", "imap", "import", "web") else "smtp"


def _record_thread_refs(
    session: Session, ids: list[str], *, own_id: str, topic_id: int, placement: Placement | None = None
) -> None:
    """The message's own id becomes real; every id it names that we never saw becomes a ghost of its topic
    (jwz threading: later replies to those ids, or the messages themselves, join this topic). ``placement``:
    what thread placement already looked up (no query when it covers every id)."""
    wanted = list(dict.fromkeys([own_id, *ids]))
    if placement is not None and placement.looked_up.issuperset(wanted):
        existing = placement.seen.intersection(wanted)
    else:
        existing = set(session.scalars(_KNOWN_REFS, {"ids": wanted}))
    if own_id in existing:
        session.execute(_OWN_REF_IS_REAL, {"own_id": own_id, "topic": topic_id})
        loaded = session.identity_map.get(session.identity_key(ThreadRef, own_id))
        if loaded is not None:
            session.expire(loaded)
    new = [{"message_id": own_id, "topic_id": topic_id, "is_ghost": False}] if own_id not in existing else []
    # A ghost id is stored truncated to the column; two names that only differ beyond it are one ghost.
    ghosts = dict.fromkeys(ref_id[:995] for ref_id in wanted[1:] if ref_id not in existing)
    new.extend(
        {"message_id": ref_id, "topic_id": topic_id, "is_ghost": True}
        for ref_id in ghosts if ref_id not in existing and ref_id != own_id
    )
    if new:
        session.execute(_INSERT_REF, new)


def post_message(
    ctx: MailContext,
    placement: Placement,
    *,
    cleaned_text: str | None = None,
    cleaned_subject: str | None = None,
    fan_out: bool = True,
    on_new_topic: Callable[[Topic], None] | None = None,
) -> Outcome:
    """Archive the post and queue its copies; ``fan_out=False`` (archive import) queues no copy.
    ``cleaned_text``/``cleaned_subject``: without a moderator's #command lines (None: as received).
    ``on_new_topic``: called with the topic this post creates, once the post is in it and before the copies
    are addressed (a moderator's #category decides who follows it); not called for a reply."""
    session, parsed, ml = ctx.session, ctx.parsed, ctx.mailing_list
    now = ctx.now
    # The archive dates a post by its arrival in the spool, not by when a worker got to it (after a restart,
    # a backlog or an archive import the two differ by hours or years).
    arrived = min(ctx.inbound.received_at or now, now)
    from_addr = (parsed.from_addr or ctx.inbound.envelope_from or "").lower()
    subject = (parsed.subject if cleaned_subject is None else cleaned_subject).strip() or NO_SUBJECT
    topic = placement.topic
    created = topic is None
    if topic is None:
        topic = Topic(
            list_id=ml.id,
            # A topic is titled without reply/forward prefixes or list tags ("Re: [forum] X" -> "X").
            subject=(normalize_subject(subject) or subject)[:500],
            normalized_subject=subject_key(subject)[:500],
            status="open",
            author_id=ctx.sender.id if ctx.sender is not None else None,
            created_at=arrived,
            last_post_at=arrived,
            # This post.
            message_count=1,
        )
        session.add(topic)
        session.flush()
        keep_loaded(session, topic)

    body_text = parsed.text if cleaned_text is None else cleaned_text
    edited = (cleaned_text is not None and cleaned_text != parsed.text) or (
        cleaned_subject is not None and cleaned_subject.strip() != parsed.subject.strip()
    )
    reply = split_reply(body_text)
    author_id = ctx.sender.id if ctx.sender is not None else None

    # Topic counters and status: "answered" once someone other than the author replied.
    if not created:
        changes: dict[str, Any] = {}
        if topic.status == "open" and _is_answer(session, topic, author_id=author_id, from_addr=from_addr[:320]):
            changes.update(status="answered", first_answer_at=arrived)
        changes["last_post_at"] = max(topic.last_post_at, arrived) if topic.last_post_at else arrived
        changes["message_count"] = (topic.message_count or 0) + 1
        write_columns(session, topic, **changes)
    if ctx.subscription is not None:
        write_columns(session, ctx.subscription, accepted_posts=(ctx.subscription.accepted_posts or 0) + 1)

    # The message row is written without the ORM: none of the steps below needs it as a session object.
    values = {
        "topic_id": topic.id,
        "parent_id": placement.parent_pk,
        "message_id": parsed.message_id[:995],
        "in_reply_to": " ".join(parsed.in_reply_to),
        "references": " ".join(parsed.references),
        "author_id": author_id,
        "from_name": parsed.from_name[:200],
        "from_addr": from_addr[:320],
        "subject": subject[:500],
        "date": parsed.date or arrived,
        "date_offset_minutes": parsed.date_offset_minutes,
        "received_at": arrived,
        "body_text": body_text,
        "new_text": reply.new_text,
        "html": parsed.html,
        "body_edited": edited,
        "inbound_id": ctx.inbound.id,
        "source": _source(ctx.inbound.source),
    }
    message_pk = session.execute(_INSERT_MESSAGE, values).inserted_primary_key[0]
    message = Message(id=message_pk, **values)

    _record_thread_refs(
        session, [*parsed.references, *parsed.in_reply_to], own_id=message.message_id, topic_id=topic.id,
        placement=placement,
    )

    if parsed.attachments:
        session.add_all(
            Attachment(
                message_pk=message_pk,
                filename=(a.filename or "attachment")[:255],
                content_type=(a.content_type or "application/octet-stream")[:127],
                size=a.size,
                sha256=hashlib.sha256(a.data).hexdigest(),
                inline=a.inline,
                content_id=(a.content_id or "")[:255],
                data=a.data,
            )
            for a in parsed.attachments
        )

    index_message(session, message, body=reply.new_text or body_text)

    if created and on_new_topic is not None:
        on_new_topic(topic)
        # A #merge in the first mail moved the post to another topic: the copies go out as part of that one.
        moved_to = session.scalar(select(_MESSAGES.c.topic_id).where(_MESSAGES.c.id == message_pk))
        topic = session.get(Topic, moved_to) or topic if moved_to is not None else topic

    queued = 0
    if fan_out:
        queued = queue_post_copies(
            session,
            ml.id,
            message_pk=message_pk,
            topic_id=topic.id,
            category_id=topic.category_id,
            author_email=from_addr,
            send_copy_to_author=bool(ctx.settings.lists.send_copy_to_author),
            now=now,
        )
    reason = (
        f"posted as message #{message_pk} in {'new ' if created else ''}topic #{topic.id};"
        f" {queued} cop{'y' if queued == 1 else 'ies'} queued"
    )
    return Outcome("done", reason, message_pk=message_pk, topic_id=topic.id, recipients=queued)


def _is_answer(session: Session, topic: Topic, *, author_id: int | None, from_addr: str) -> bool:
    """Whether a post by this author (not yet written) answers the topic's first post."""
    if topic.author_id is not None and author_id is not None:
        return topic.author_id != author_id
    first_from = session.scalar(_FIRST_AUTHOR, {"topic": topic.id})
    return bool(first_from) and first_from != from_addr


__all__ = ["NO_SUBJECT", "find_duplicate", "post_message"]
