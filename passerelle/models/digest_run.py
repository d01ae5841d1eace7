"""One digest for one subscription and one period: the unique key makes sending idempotent across restarts,
double runs and several scheduler processes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class DigestRun(Base):
    __tablename__ = "digest_runs"
    __table_args__ = (UniqueConstraint("subscription_id", "period", "period_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True)
    # "daily" or "weekly"; period_key is the subscriber's local date ("2026-11-23") or ISO week ("2026-W48").
    period: Mapped[str] = mapped_column(String(6))
    period_key: Mapped[str] = mapped_column(String(10))
    # Messages with received_at in [since, until) are in it.
    since: Mapped[datetime]
    until: Mapped[datetime]
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    # "sent" (an outbox row was written) or "empty" (nothing new: no mail, but the period is done).
    outcome: Mapped[str] = mapped_column(String(6), default="sent")
    created_at: Mapped[datetime]
