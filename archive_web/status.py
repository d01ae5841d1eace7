"""Operators' page: the inbound spool, shunted messages (with the reason), the outbox and failed
deliveries, held messages, and the health of every IMAP account read by the gateway."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, render_template
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from passerelle.models import HeldMessage, ImapCursor, InboundMessage, OutboxMessage

from .app import NavItem
from .web import db, now, operator_required, settings

bp = Blueprint("status", __name__)
NAV = (NavItem("status.status", _l("System status"), requires="operator", order=95),)

LISTED = 50


@bp.route("/status")
@operator_required
def status() -> str:
    session = db()
    current = now()
    spool = dict(session.execute(select(InboundMessage.status, func.count()).group_by(InboundMessage.status)).all())
    outbox = dict(session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())
    oldest_pending = session.scalar(
        select(func.min(OutboxMessage.created_at)).where(OutboxMessage.status.in_(("pending", "sending")))
    )
    oldest_new = session.scalar(
        select(func.min(InboundMessage.received_at)).where(InboundMessage.status.in_(("new", "processing")))
    )
    shunted = session.scalars(
        select(InboundMessage)
        .where(InboundMessage.status == "shunted")
        .order_by(InboundMessage.received_at.desc(), InboundMessage.id.desc())
        .limit(LISTED)
    ).all()
    failed = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.status == "failed")
        .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
        .limit(LISTED)
    ).all()
    retrying = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.status == "pending", OutboxMessage.attempts > 0)
        .order_by(OutboxMessage.next_attempt_at)
        .limit(LISTED)
    ).all()
    held_count = session.scalar(select(func.count(HeldMessage.id)).where(HeldMessage.decision.is_(None))) or 0
    cursors = session.scalars(select(ImapCursor).order_by(ImapCursor.account)).all()
    configured = {str(a.get("name", "")): a for a in settings().imap.accounts}
    stale_after = timedelta(seconds=max(3 * int(settings().imap.poll_seconds), 3 * int(settings().imap.idle_seconds)))
    accounts: list[dict[str, Any]] = []
    for cursor in cursors:
        healthy = cursor.last_ok_at is not None and (
            cursor.last_error_at is None or cursor.last_ok_at >= cursor.last_error_at
        ) and current - cursor.last_ok_at <= stale_after
        accounts.append({"cursor": cursor, "healthy": healthy, "configured": cursor.account in configured})
    seen = {c.account for c in cursors}
    never_read = [name for name in configured if name and name not in seen]
    return render_template(
        "status.html",
        spool=spool,
        outbox=outbox,
        oldest_pending=oldest_pending,
        oldest_new=oldest_new,
        shunted=shunted,
        failed=failed,
        retrying=retrying,
        held_count=held_count,
        accounts=accounts,
        never_read=never_read,
        now=current,
    )
