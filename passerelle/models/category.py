"""A category of topics, created by moderators as topics arrive."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

PUBLIC_ACCESS = ("full", "titles")


class Category(Base):
    __tablename__ = "categories"
    __table_args__ = (UniqueConstraint("list_id", "slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    slug: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    # What readers who are not signed in see: "full" (everything) or "titles" (titles, category, status).
    public_access: Mapped[str] = mapped_column(String(10), default="titles")
    created_at: Mapped[datetime]
