"""The inbound spool: raw bytes committed before SMTP answers 250, processed by workers afterwards."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, deferred, mapped_column

from .base import Base

# new: waiting for a worker; processing: claimed (claimed_by/claimed_at); done: archived and fanned out;
# held: waiting for a moderator; shunted: failed max_attempts times or refused by a rule, kept with the
# reason; duplicate: Message-ID already archived; bounce / command / autoreply / loop: handled, not posted.
STATUSES = ("new", "processing", "done", "held", "shunted", "duplicate", "bounce", "command", "dropped")


class InboundMessage(Base):
    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(index=True)
    # "smtp", "imap:<account>", "import", "web".
    source: Mapped[str] = mapped_column(String(80), default="smtp")
    envelope_from: Mapped[str] = mapped_column(String(320), default="")
    envelope_to: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The list the message was addressed to (resolved at RCPT time).
    list_name: Mapped[str] = mapped_column(String(64), default="")
    message_id_header: Mapped[str] = mapped_column(String(995), default="", index=True)
    size: Mapped[int] = mapped_column(Integer, default=0)
    raw: Mapped[bytes] = deferred(mapped_column(LargeBinary))
    status: Mapped[str] = mapped_column(String(12), default="new", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Why it was shunted, held, dropped or refused: shown to operators.
    reason: Mapped[str] = mapped_column(Text, default="")
    claimed_by: Mapped[str] = mapped_column(String(80), default="")
    claimed_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]
