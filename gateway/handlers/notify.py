"""Answering the sender of a message we did not post (refusals, closed topics): who, in which language."""

from __future__ import annotations

from gateway.context import MailContext
from passerelle.mail.addresses import is_valid_address


def reply_address(ctx: MailContext) -> str | None:
    """Where to tell the sender, or None when nobody should be answered.

    Never a null reverse path (RFC 5321 4.5.5: no answer to bounces), never one of our own addresses
    (a loop), never an invalid address (backscatter to a forged garbage From helps nobody).
    """
    if not ctx.inbound.envelope_from or ctx.inbound.envelope_from == "<>":
        return None
    candidate = ctx.parsed.from_addr or ctx.inbound.envelope_from
    if not candidate or candidate.lower().endswith("@" + ctx.settings.lists.domain.lower()):
        return None
    if not is_valid_address(candidate, allow_test_domains=True):
        return None
    return candidate


def language_for(ctx: MailContext) -> str:
    if ctx.sender is not None and ctx.sender.language:
        return ctx.sender.language
    return ctx.mailing_list.language or ctx.settings.site.default_language
