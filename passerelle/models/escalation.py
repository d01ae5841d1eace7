"""The register of unresolved obstacles escalated to national or European level, with follow-up notes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

STATES = ("escalated", "acknowledged", "in-progress", "resolved", "withdrawn")


class Escalation(Base):
    __tablename__ = "escalations"

    id: Mapped[int] = mapped_column(primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"), index=True)
    level: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(12), default="escalated", index=True)
    note: Mapped[str] = mapped_column(Text, default="")
    escalated_by_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    escalated_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class EscalationNote(Base):
    __tablename__ = "escalation_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    escalation_id: Mapped[int] = mapped_column(ForeignKey("escalations.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
