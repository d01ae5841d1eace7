"""A member's place on a list: role, delivery mode, state, bounce score."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base
from .mailing_list import MailingList
from .member import Member

ROLES = ("member", "moderator", "owner")
DELIVERY_MODES = ("instant", "daily", "weekly", "nomail")
# active: receives mail per delivery_mode; pending: waits for the confirmation reply;
# unsubscribed: left (row kept for history); disabled: too many bounces, re-enabled by the member.
STATUSES = ("active", "pending", "unsubscribed", "disabled")


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("member_id", "list_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id"), index=True)
    role: Mapped[str] = mapped_column(String(10), default="member")
    delivery_mode: Mapped[str] = mapped_column(String(10), default="instant")
    status: Mapped[str] = mapped_column(String(12), default="active", index=True)
    # Accepted posts so far: the first `lists.hold_first_posts` are held for moderation.
    accepted_posts: Mapped[int] = mapped_column(Integer, default=0)
    bounce_score: Mapped[float] = mapped_column(Float, default=0.0)
    bounce_updated_at: Mapped[datetime | None]
    disabled_reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime | None]

    member: Mapped[Member] = relationship(lazy="joined")
    mailing_list: Mapped[MailingList] = relationship(lazy="joined")

    @property
    def is_moderator(self) -> bool:
        return self.role in ("moderator", "owner")
