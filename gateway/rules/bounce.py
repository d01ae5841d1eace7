"""Bounce rule: delivery failure reports are scored against the member, never posted.

A bounce arrives at the VERP return path of a copy (LIST-bounces+alice=example.org@domain), or, from
MTAs that ignore the return path, at any of our addresses with a null reverse path (RFC 5321 4.5.5) or
from MAILER-DAEMON. Mail to the bounce address that is not a bounce (a challenge-response system, a human
answering a bounce) is not posted either.
"""

from __future__ import annotations

from gateway.context import MailContext
from passerelle.mail.addresses import verp_decode

from .base import Decision

_DAEMON_LOCALS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon", "mdaemon"})


def verp_recipient(ctx: MailContext) -> str | None:
    """The member address named by the VERP envelope recipient, if the mail came to one."""
    bounce_local = f"{ctx.mailing_list.name}-bounces"
    for address in ctx.inbound.envelope_to or ():
        decoded = verp_decode(address, list_local=bounce_local)
        if decoded:
            return decoded
    return None


def _looks_like_bounce(ctx: MailContext) -> bool:
    if not ctx.inbound.envelope_from or ctx.inbound.envelope_from == "<>":
        return True
    from_local = ctx.parsed.from_addr.partition("@")[0].lower()
    if from_local in _DAEMON_LOCALS:
        return True
    content_type = (ctx.parsed.raw_header("Content-Type") or "").lower()
    return "multipart/report" in content_type


def bounce_rule(ctx: MailContext) -> Decision | None:
    to_bounce_address = ctx.recipient_local.startswith(f"{ctx.mailing_list.name}-bounces")
    if not to_bounce_address and not _looks_like_bounce(ctx):
        return None
    from gateway.bounces.parse import parse_bounce

    verp = verp_recipient(ctx)
    report = parse_bounce(ctx.inbound.raw, verp_recipient=verp)
    if report is not None:
        named = ", ".join(r.address for r in report.recipients[:5]) or "nobody we can identify"
        kind = "abuse report" if report.feedback_type else "bounce"
        return Decision("bounce", f"{kind} for {named}", data=report)
    if to_bounce_address:
        return Decision("drop", "mail to the bounce address that is not a delivery report (not posted)")
    return None
