"""Every Message-ID the threader has seen, real or ghost, and the topic it belongs to.

A ghost is an id named in In-Reply-To/References whose message never reached us (yet): later messages
that point at it, or the message itself when it finally arrives, join the same topic (jwz threading).
"""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class ThreadRef(Base):
    __tablename__ = "thread_refs"

    message_id: Mapped[str] = mapped_column(String(995), primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"), index=True)
    is_ghost: Mapped[bool] = mapped_column(Boolean, default=True)
