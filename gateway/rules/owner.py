"""Owner rule: mail to LIST-owner is for the people running the list (RFC 2142 habit): forwarded to them."""

from __future__ import annotations

from gateway.context import MailContext

from .base import Decision


def owner_rule(ctx: MailContext) -> Decision | None:
    if ctx.recipient_local == f"{ctx.mailing_list.name}-owner":
        return Decision("owner", "mail to the list owners")
    return None
