"""A post held for moderation (non-member, new member, size...). Nothing held is lost: the raw bytes stay in
the spool row until a moderator approves, rejects or discards it, or it expires."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

DECISIONS = ("approved", "rejected", "discarded", "expired")


class HeldMessage(Base):
    __tablename__ = "held_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    inbound_id: Mapped[int] = mapped_column(ForeignKey("inbound_messages.id"), index=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id"), index=True)
    sender: Mapped[str] = mapped_column(String(320), default="")
    subject: Mapped[str] = mapped_column(String(500), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    # Secret used in the moderator notice's reply address / web link.
    token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    decision: Mapped[str | None] = mapped_column(String(10), index=True)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    decided_at: Mapped[datetime | None]
    decision_reason: Mapped[str] = mapped_column(Text, default="")
