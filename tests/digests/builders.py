"""Topics and messages written straight into the archive, for digest tests (ingest has its own tests)."""

from __future__ import annotations

import itertools
from datetime import datetime

from sqlalchemy.orm import Session

from passerelle.models import Category, Escalation, MailingList, Member, Message, Topic

_ids = itertools.count(1)


def make_topic(
    session: Session,
    mailing_list: MailingList,
    subject: str,
    *,
    at: datetime,
    author: Member | None = None,
    category: Category | None = None,
    text: str = "",
    message_id: str | None = None,
) -> tuple[Topic, Message]:
    topic = Topic(
        list_id=mailing_list.id, category_id=category.id if category else None, subject=subject,
        normalized_subject=subject.lower(), status="open", author_id=author.id if author else None,
        created_at=at, last_post_at=at, message_count=0,
    )
    session.add(topic)
    session.flush()
    first = add_message(session, topic, text or f"Question about {subject}", at=at, author=author,
                        message_id=message_id)
    return topic, first


def add_message(
    session: Session,
    topic: Topic,
    text: str,
    *,
    at: datetime,
    author: Member | None = None,
    new_text: str | None = None,
    body_text: str | None = None,
    message_id: str | None = None,
) -> Message:
    n = next(_ids)
    message = Message(
        topic_id=topic.id, message_id=message_id or f"m{n}.{topic.id}@example.org",
        author_id=author.id if author else None, from_name=author.name if author else "Anonyme",
        from_addr=author.email if author else "anon@example.org", subject=topic.subject, date=at, received_at=at,
        body_text=text if body_text is None else body_text, new_text=text if new_text is None else new_text,
    )
    session.add(message)
    if topic.status == "open" and topic.message_count >= 1 and author is not None and author.id != topic.author_id:
        topic.status = "answered"
        topic.first_answer_at = at
    topic.message_count += 1
    topic.last_post_at = at
    session.flush()
    return message


def close_topic(session: Session, topic: Topic, *, at: datetime, outcome: str = "solved") -> None:
    topic.status = "closed"
    topic.outcome = outcome
    topic.closed_at = at
    session.flush()


def escalate_topic(session: Session, topic: Topic, *, at: datetime, level: str = "national") -> Escalation:
    topic.escalation_level = level
    escalation = Escalation(topic_id=topic.id, level=level, state="escalated", note="", escalated_at=at,
                            updated_at=at)
    session.add(escalation)
    session.flush()
    return escalation
