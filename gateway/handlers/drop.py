"""Not posted, nothing to answer: loops, automatic replies, stray mail to the bounce address."""

from __future__ import annotations

import logging

from gateway.context import MailContext

from . import Outcome

log = logging.getLogger(__name__)


def drop(ctx: MailContext, reason: str) -> Outcome:
    log.info("dropped inbound #%s <%s>: %s", ctx.inbound.id, ctx.parsed.message_id, reason)
    return Outcome("dropped", reason)
