"""Mail waiting to go out through the relay: one row per recipient, retried with backoff."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, deferred, mapped_column

from .base import Base

KINDS = ("post", "notice", "digest", "confirm", "moderation", "report")
# pending: to send at next_attempt_at; sending: claimed by a deliverer; sent; failed: gave up (5xx or
# retried for too long) and visible to operators.
STATUSES = ("pending", "sending", "sent", "failed")


class OutboxMessage(Base):
    __tablename__ = "outbox"
    # A rerun of the same handler adds nothing: the key is e.g. "post:<message pk>" or "digest:<sub>:<day>".
    __table_args__ = (UniqueConstraint("dedupe_key", "recipient"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(12), default="post")
    dedupe_key: Mapped[str] = mapped_column(String(200))
    # For list posts: the archived message, built into a personalised copy at send time.
    message_pk: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lists.id"))
    recipient: Mapped[str] = mapped_column(String(320))
    # For everything else: the finished message (headers and body) as bytes.
    payload: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    status: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    claimed_by: Mapped[str] = mapped_column(String(80), default="")
    claimed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
