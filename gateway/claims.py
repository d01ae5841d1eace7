"""Claiming queue rows (spool, outbox) so that several workers never process the same row twice.

PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` lets each worker take rows no other transaction holds,
without waiting. SQLite: every writing transaction begins IMMEDIATE (passerelle.db), so the select and the
update below run under the database's single write lock, which gives the same guarantee.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session


def worker_identity(role: str) -> str:
    """"worker@host:pid:thread" — stored in claimed_by, shown to operators."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:80]


def claim_ids(
    session: Session,
    model: Any,
    *,
    where: ColumnElement[bool],
    order_by: Sequence[Any],
    limit: int,
    status: str,
    worker_id: str,
    now: datetime,
) -> list[int]:
    """Ids of up to ``limit`` rows matching ``where``, now marked ``status`` and claimed by ``worker_id``."""
    query = select(model.id).where(where).order_by(*order_by).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query))
    if ids:
        session.execute(
            update(model)
            .where(model.id.in_(ids))
            .values(status=status, claimed_by=worker_id, claimed_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids


__all__ = ["claim_ids", "worker_identity"]
