"""Size rule: a message over the limit (it can come in by IMAP, which has no SMTP SIZE) waits for a moderator."""

from __future__ import annotations

from gateway.context import MailContext
from gateway.templates import Localised

from .base import Decision
from .membership import approved_by_moderator


def size_rule(ctx: MailContext) -> Decision | None:
    limit = int(ctx.settings.lists.max_message_bytes or 0)
    size = ctx.inbound.size or len(ctx.inbound.raw)
    if not limit or size <= limit or ctx.recipient_local != ctx.mailing_list.name:
        return None
    if approved_by_moderator(ctx):
        return None
    return Decision("hold", Localised("reason.too_large", size=size, limit=limit))
