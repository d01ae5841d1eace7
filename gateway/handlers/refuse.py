"""Refuse a post (a stranger writing when lists.hold_non_members is false): not posted, the sender told why."""

from __future__ import annotations

import logging

from gateway.context import MailContext
from gateway.notices import queue_notice
from gateway.templates import render

from . import Outcome
from .notify import language_for, reply_address

log = logging.getLogger(__name__)


def refuse(ctx: MailContext, reason: str) -> Outcome:
    ml, settings = ctx.mailing_list, ctx.settings
    to = reply_address(ctx)
    if to is not None:
        subject, body = render(
            "refused_non_member",
            language_for(ctx),
            subject=ctx.parsed.subject or "-",
            list=ml.name,
            list_title=ml.title or ml.name,
            list_address=settings.list_address(ml.name),
            request_address=settings.list_address(ml.name, "-request"),
            sender=to,
            reason=reason,
        )
        queue_notice(
            ctx.session, settings, ml, to=to, subject=subject, body=body, now=ctx.now,
            dedupe_key=f"refused:{ctx.inbound.id}", in_reply_to=ctx.parsed.message_id,
        )
    told = f"; {to} was told" if to else "; nobody to tell (no usable sender address)"
    log.info("refused inbound #%s <%s>: %s%s", ctx.inbound.id, ctx.parsed.message_id, reason, told)
    return Outcome("dropped", f"refused: {reason}{told}"[:2000])
