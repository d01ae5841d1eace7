"""Bounce processing: one BounceEvent per bounced member, scored (gateway.bounce_score), never posted."""

from __future__ import annotations

import logging
from typing import Any

from gateway.context import MailContext

from . import Outcome

log = logging.getLogger(__name__)


def handle_bounce(ctx: MailContext, report: Any) -> Outcome:
    """Record every recipient named by ``report`` (a gateway.bounces.parse.BounceReport)."""
    from gateway.bounce_score import record_bounce

    recorded = []
    for bounced in report.recipients:
        outcome = record_bounce(
            ctx.session,
            ctx.settings,
            mailing_list=ctx.mailing_list,
            address=bounced.address,
            hard=bounced.hard,
            now=ctx.now,
            status=bounced.status or "",
            reason=bounced.reason,
            diagnostic=bounced.diagnostic,
            action=bounced.action,
            inbound_id=ctx.inbound.id,
        )
        recorded.append(f"{bounced.address} ({'hard' if bounced.hard else 'soft'}"
                        f"{', delivery disabled' if outcome.disabled else ''})")
    if not recorded:
        reason = "delivery report naming no recipient we can identify (recorded, not posted)"
    else:
        reason = "recorded for " + ", ".join(recorded)
    log.info("inbound #%s <%s>: %s", ctx.inbound.id, ctx.parsed.message_id, reason)
    return Outcome("bounce", reason[:2000])
