"""Helpers for the command and moderation tests: raw mails, a MailContext built like the worker builds it,
topics with messages, and reading what went to the outbox."""

from __future__ import annotations

from datetime import datetime, timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message as EmailMessage
from email.policy import compat32

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.context import MailContext
from passerelle.config import Settings
from passerelle.mail.parse import parse_message
from passerelle.mail.subject import subject_key
from passerelle.models import (
    InboundMessage,
    MailingList,
    Member,
    Message,
    OutboxMessage,
    Subscription,
    ThreadRef,
    Topic,
)
from tests.factories import T0


def raw_mail(
    *,
    sender: str,
    to: str = "forum@forum.test",
    subject: str = "Hello",
    body: str = "",
    message_id: str = "m1@example.org",
    in_reply_to: str | None = None,
    references: str | None = None,
    name: str = "",
    extra: str = "",
) -> bytes:
    """A plain-text mail (CRLF line ends, UTF-8 8bit) as a real client would send it."""
    headers = [
        f"From: {name + ' ' if name else ''}<{sender}>",
        f"To: {to}",
        f"Subject: {make_header(decode_header(subject)).encode() if not subject.isascii() else subject}",
        "Date: Mon, 02 Nov 2026 10:00:00 +0100",
        f"Message-ID: <{message_id}>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    if in_reply_to:
        headers.append(f"In-Reply-To: <{in_reply_to}>")
    if references or in_reply_to:
        headers.append(f"References: {references or '<' + str(in_reply_to) + '>'}")
    if extra:
        headers.extend(extra.strip("\n").split("\n"))
    text = "\r\n".join(headers) + "\r\n\r\n" + body.replace("\r\n", "\n").replace("\n", "\r\n")
    return text.encode("utf-8")


def make_ctx(
    db: Session,
    settings: Settings,
    raw: bytes,
    *,
    mailing_list: MailingList,
    local: str = "forum",
    now: datetime = T0,
    resolver: object = None,
) -> MailContext:
    """A MailContext for ``raw`` the way the worker builds it (spool row, parsed message, sender lookup)."""
    parsed = parse_message(raw)
    inbound = InboundMessage(
        received_at=now, source="smtp", envelope_from=parsed.from_addr, envelope_to=[f"{local}@forum.test"],
        list_name=mailing_list.name, message_id_header=parsed.message_id, size=len(raw), raw=raw,
        status="processing", attempts=1, reason="",
    )
    db.add(inbound)
    db.flush()
    sender = db.scalar(select(Member).where(Member.email == parsed.from_addr.lower())) if parsed.from_addr else None
    sub = None
    if sender is not None:
        sub = db.scalar(select(Subscription).where(Subscription.member_id == sender.id,
                                                   Subscription.list_id == mailing_list.id))
    return MailContext(session=db, settings=settings, now=now, inbound=inbound, parsed=parsed,
                       mailing_list=mailing_list, sender=sender, subscription=sub, recipient_local=local,
                       resolver=resolver)


def make_topic(
    db: Session,
    mailing_list: MailingList,
    subject: str,
    messages: list[tuple[str, str | None, Member | None]],
    *,
    now: datetime = T0,
    status: str = "open",
) -> Topic:
    """A topic whose messages are (message_id, parent message_id, author), one minute apart."""
    topic = Topic(list_id=mailing_list.id, subject=subject, normalized_subject=subject_key(subject), status=status,
                  created_at=now, last_post_at=now, message_count=0,
                  author_id=messages[0][2].id if messages and messages[0][2] else None)
    db.add(topic)
    db.flush()
    by_mid: dict[str, Message] = {}
    for index, (mid, parent, author) in enumerate(messages):
        when = now + timedelta(minutes=index)
        msg = Message(topic_id=topic.id, parent_id=by_mid[parent].id if parent else None, message_id=mid,
                      in_reply_to=parent or "", references=parent or "", author_id=author.id if author else None,
                      from_name=author.name if author else "", from_addr=author.email if author else "x@example.org",
                      subject=subject if index == 0 else f"Re: {subject}", date=when, received_at=when,
                      body_text=f"text of {mid}", new_text=f"text of {mid}", source="smtp")
        db.add(msg)
        db.flush()
        db.add(ThreadRef(message_id=mid, topic_id=topic.id, is_ghost=False))
        by_mid[mid] = msg
        topic.message_count = index + 1
        topic.last_post_at = when
    db.flush()
    return topic


def outbox(db: Session, recipient: str | None = None) -> list[EmailMessage]:
    """Mails queued so far (optionally for one recipient), oldest first, parsed."""
    query = select(OutboxMessage).order_by(OutboxMessage.id)
    if recipient is not None:
        query = query.where(OutboxMessage.recipient == recipient.lower())
    return [message_from_bytes(row.payload or b"", policy=compat32) for row in db.scalars(query)]


def body_of(msg: EmailMessage) -> str:
    part = msg
    if msg.is_multipart():
        part = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    payload = part.get_payload(decode=True)
    return payload.decode(part.get_content_charset() or "utf-8") if isinstance(payload, bytes) else str(payload)


def subject_of(msg: EmailMessage) -> str:
    return " ".join(str(make_header(decode_header(msg["Subject"] or ""))).split())
