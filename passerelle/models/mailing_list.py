"""A forum: one posting address, its members, categories and topics."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class MailingList(Base):
    __tablename__ = "lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Local part of the posting address; also the List-Id label (RFC 2919).
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(5), default="fr")
    # Public access to topics in categories that do not say otherwise: "full" or "titles".
    default_public_access: Mapped[str] = mapped_column(String(10), default="titles")
    created_at: Mapped[datetime]
