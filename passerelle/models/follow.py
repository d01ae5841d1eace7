"""A member's choice to follow or mute one topic or one category."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

MODES = ("follow", "mute")


class TopicFollow(Base):
    __tablename__ = "topic_follows"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True)
    mode: Mapped[str] = mapped_column(String(6), default="follow")
    created_at: Mapped[datetime]


class CategoryFollow(Base):
    __tablename__ = "category_follows"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), primary_key=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id", ondelete="CASCADE"), primary_key=True)
    mode: Mapped[str] = mapped_column(String(6), default="follow")
    created_at: Mapped[datetime]
