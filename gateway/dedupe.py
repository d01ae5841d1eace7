"""A message seen before: archived already (cross-posts, retries), or already run as commands (replays).

Posts are deduplicated by the archive itself (Message.message_id is unique across lists). Command mails are
not archived, so the archive cannot see them again: a captured DKIM-signed ``#close`` or ``unsubscribe``
re-sent days later would verify again and run again. RFC 5322 (3.6.4) makes a Message-ID unique to one
message; a spool row whose Message-ID (without one: whose bytes) was already run as commands for the same
list, by an earlier delivery, is a replay (or a sending MTA retrying after a lost ``250``) and is not run
again. Rows of one SMTP transaction (one envelope naming forum@ and forum-request@) share their arrival time
and are not replays of each other.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from passerelle.models import InboundMessage, MailingList, Message, Topic

from .context import MailContext
from .handlers import Outcome

log = logging.getLogger(__name__)


def replayed_command(ctx: MailContext, *, posting: bool = False) -> Outcome | None:
    """The "duplicate" outcome when this mail was already run as commands for this list: same Message-ID, or
    (a mail without one) the same bytes.

    ``posting``: the mail goes to the posting address; only one with a ``#`` can hold commands (a post
    without one is deduplicated by the archive), so the others cost no query.
    """
    parsed, inbound = ctx.parsed, ctx.inbound
    if posting and "#" not in (parsed.text or "") and "#" not in (parsed.subject or ""):
        return None
    query = select(InboundMessage.id, InboundMessage.received_at).where(
        InboundMessage.list_name == inbound.list_name,
        InboundMessage.status == "command",
    )
    key = inbound.message_id_header
    if key:
        query = query.where(InboundMessage.message_id_header == key)
        what = f"Message-ID <{key}>"
    else:
        raw = inbound.raw or b""
        query = query.where(InboundMessage.message_id_header == "", InboundMessage.size == len(raw),
                            InboundMessage.raw == raw)
        what = "the same message (no Message-ID, same bytes)"
    if inbound.id is not None:
        query = query.where(InboundMessage.id != inbound.id)
    earlier = [
        row_id for row_id, received_at in ctx.session.execute(query.order_by(InboundMessage.id))
        if inbound.received_at is None or received_at != inbound.received_at
    ]
    if not earlier:
        return None
    reason = (
        f"replayed command mail: {what} was already run as commands for list {inbound.list_name}"
        f" (spool row #{earlier[0]}); not run again"
    )
    log.warning("inbound #%s <%s> from %s: %s", inbound.id, parsed.message_id, parsed.from_addr, reason)
    return Outcome("duplicate", reason)


def already_archived(session: Session, message_id: str, message_pk: int) -> Outcome:
    """The "duplicate" outcome for a post whose Message-ID the archive holds: which list has it, so that an
    operator understands a cross-post (the same message sent to two of our lists is archived once, in the
    first; the spool row of the second keeps its raw bytes)."""
    found = session.execute(
        select(MailingList.name, Topic.id)
        .select_from(Message)
        .join(Topic, Topic.id == Message.topic_id)
        .join(MailingList, MailingList.id == Topic.list_id)
        .where(Message.id == message_pk)
    ).first()
    where = f"list {found[0]} (message #{message_pk}, topic #{found[1]})" if found else f"message #{message_pk}"
    return Outcome(
        "duplicate",
        f"Message-ID <{message_id}> already archived in {where}; not posted again (the raw message is kept here)",
        message_pk=message_pk,
    )


__all__ = ["already_archived", "replayed_command"]
