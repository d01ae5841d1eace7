"""Request rule: mail to LIST-request@, LIST+<command>@ (and the -join/-leave aliases) carries commands."""

from __future__ import annotations

from gateway.context import MailContext
from gateway.recipients import classify_local

from .base import Decision


def request_rule(ctx: MailContext) -> Decision | None:
    target = classify_local(ctx.recipient_local, [ctx.mailing_list.name])
    if target is not None and target.role == "request":
        return Decision("command", f"mail command to {ctx.recipient_local}@{ctx.settings.lists.domain}")
    return None
