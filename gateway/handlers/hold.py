"""Hold a post for moderation: the one place that does it, so that the moderation module owns the flow."""

from __future__ import annotations

from gateway.context import MailContext

from . import Outcome


def hold(ctx: MailContext, reason: str) -> Outcome:
    """HeldMessage row with a token and an expiry, notices to the moderators and to the author
    (gateway.moderation.hold_message); the raw bytes stay in the spool row, status "held"."""
    from gateway.moderation import hold_message

    held = hold_message(ctx, reason)
    return Outcome("held", f"held #{held.id}: {reason}"[:2000])
