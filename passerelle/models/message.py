"""One archived post."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, text
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from .base import Base
from .member import Member


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    # The Message-ID header without angle brackets; unique: the dedupe key of ingest.
    message_id: Mapped[str] = mapped_column(String(995), unique=True)
    in_reply_to: Mapped[str] = mapped_column(Text, default="")
    references: Mapped[str] = mapped_column(Text, default="")
    author_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), index=True)
    from_name: Mapped[str] = mapped_column(String(200), default="")
    from_addr: Mapped[str] = mapped_column(String(320), default="", index=True)
    subject: Mapped[str] = mapped_column(String(500), default="")
    # The Date header in UTC, and the sender's offset from UTC in minutes (kept for display).
    date: Mapped[datetime] = mapped_column(index=True)
    date_offset_minutes: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime]
    # The text as archived (commands removed), the new part without quotes and signature, and the
    # original HTML part when there was one (sanitised at display time, never stored sanitised-only).
    body_text: Mapped[str] = deferred(mapped_column(Text, default=""))
    new_text: Mapped[str] = deferred(mapped_column(Text, default=""))
    html: Mapped[str | None] = deferred(mapped_column(Text))
    # True when body_text or subject is not the original (a moderator's #commands were removed): list copies
    # then carry body_text and subject instead of the original body and Subject.
    body_edited: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # The spool row holding the raw bytes ("view the raw message").
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))
    # "smtp", "imap", "import", "web".
    source: Mapped[str] = mapped_column(String(10), default="smtp")

    author: Mapped[Member | None] = relationship(lazy="joined")
