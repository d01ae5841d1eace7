"""A thread: the obstacle or question, its replies, its status, category, tags and escalation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base
from .category import Category
from .tag import Tag, topic_tags

# open: no answer yet; answered: someone other than the author replied; closed: by a moderator, with an outcome.
STATUSES = ("open", "answered", "closed")
OUTCOMES = ("solved", "study-needed", "legal-impossibility", "duplicate", "no-action")
ESCALATION_LEVELS = ("national", "european")


class Topic(Base):
    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id"), index=True)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"), index=True)
    subject: Mapped[str] = mapped_column(String(500))
    # Subject without reply prefixes, lower-cased: the key of the subject fallback of threading.
    normalized_subject: Mapped[str] = mapped_column(String(500), index=True)
    status: Mapped[str] = mapped_column(String(10), default="open", index=True)
    outcome: Mapped[str | None] = mapped_column(String(30))
    closed_at: Mapped[datetime | None]
    # None, "national" or "european": where the unresolved obstacle was escalated (see Escalation).
    escalation_level: Mapped[str | None] = mapped_column(String(10), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    last_post_at: Mapped[datetime] = mapped_column(index=True)
    first_answer_at: Mapped[datetime | None]
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    # Set when a moderator merged this topic into another (#merge): readers are sent there.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id"))

    category: Mapped[Category | None] = relationship(lazy="joined")
    tags: Mapped[list[Tag]] = relationship(secondary=topic_tags, lazy="selectin", order_by=Tag.name)
