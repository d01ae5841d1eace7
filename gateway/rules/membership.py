"""Membership rule: who may post without a moderator looking first.

Strangers are held (or refused, per lists.hold_non_members); the first lists.hold_first_posts posts of a
new member are held too (spam from freshly subscribed addresses is the classic list abuse). A post a
moderator already approved passes.
"""

from __future__ import annotations

from gateway.context import MailContext
from gateway.templates import Localised

from .base import Decision

# A disabled subscription (too many bounces) is still a member: only their delivery is off.
POSTING_STATUSES = ("active", "disabled")


def approved_by_moderator(ctx: MailContext) -> bool:
    try:
        from gateway.moderation import is_approved
    except ImportError:
        return False
    return is_approved(ctx.session, ctx.inbound)


def membership_rule(ctx: MailContext) -> Decision | None:
    if ctx.recipient_local != ctx.mailing_list.name:
        return None
    sub = ctx.subscription
    who = ctx.parsed.from_addr or ctx.inbound.envelope_from or "an unknown sender"
    if sub is None or sub.status not in POSTING_STATUSES:
        if approved_by_moderator(ctx):
            return None
        # Localised: the moderators and the sender read it in their own languages (gateway.templates.render).
        title = ctx.mailing_list.title or ctx.mailing_list.name
        if ctx.settings.lists.hold_non_members:
            return Decision("hold", Localised("reason.non_member", sender=who, list=title))
        request = ctx.settings.list_address(ctx.mailing_list.name, "-request")
        return Decision("refuse", Localised(
            "refuse.non_member", operator_text=f"{who} is not a member of {ctx.mailing_list.name}",
            sender=who, request=request,
        ))
    first_posts = int(ctx.settings.lists.hold_first_posts or 0)
    if first_posts and not sub.is_moderator and (sub.accepted_posts or 0) < first_posts:
        if approved_by_moderator(ctx):
            return None
        return Decision(
            "hold", Localised("reason.first_posts", count=first_posts, number=(sub.accepted_posts or 0) + 1),
        )
    return None
