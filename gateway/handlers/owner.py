"""Mail to LIST-owner: forwarded to the list's owners (moderators when it has no owner) as a notice.

Forwarded as our own notice quoting the text, rather than resent as is, so that the author's DMARC policy
cannot get it rejected on the way; the original with its attachments stays in the spool.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from gateway.context import MailContext
from gateway.notices import queue_notice
from gateway.templates import render
from passerelle.models import Member, Subscription

from . import Outcome

log = logging.getLogger(__name__)
MAX_TEXT = 20000


def forward_to_owners(ctx: MailContext) -> Outcome:
    ml, settings, session = ctx.mailing_list, ctx.settings, ctx.session
    rows = session.execute(
        select(Member.email, Member.language, Subscription.role)
        .join(Subscription, Subscription.member_id == Member.id)
        .where(
            Subscription.list_id == ml.id,
            Subscription.role.in_(("owner", "moderator")),
            Subscription.status == "active",
        )
        .order_by(Member.id)
    ).all()
    owners = [r for r in rows if r.role == "owner"] or list(rows)
    if not owners:
        reason = "mail to the owners, but the list has neither owner nor moderator (kept in the spool)"
        log.warning("inbound #%s <%s>: %s", ctx.inbound.id, ctx.parsed.message_id, reason)
        return Outcome("dropped", reason)
    parsed = ctx.parsed
    sender = parsed.from_addr or ctx.inbound.envelope_from or "?"
    for owner in owners:
        subject, body = render(
            "owner_forward",
            owner.language or ml.language,
            list=ml.name,
            list_title=ml.title or ml.name,
            owner_address=settings.list_address(ml.name, "-owner"),
            subject=parsed.subject or "-",
            sender=sender,
            sender_name=parsed.from_name or sender,
            text=parsed.text[:MAX_TEXT],
            attachments=len(parsed.attachments),
            inbound_id=ctx.inbound.id,
        )
        queue_notice(
            session, settings, ml, to=owner.email, subject=subject, body=body, now=ctx.now,
            dedupe_key=f"owner:{ctx.inbound.id}", reply_to=sender if "@" in sender else None,
        )
    reason = f"forwarded to {len(owners)} owner(s): " + ", ".join(o.email for o in owners[:5])
    log.info("inbound #%s <%s>: %s", ctx.inbound.id, parsed.message_id, reason)
    return Outcome("done", reason[:2000])
