"""Queue a mail written by Passerelle itself (command replies, moderation notices, refusals, confirmations).

Every such mail goes through the outbox like list copies do, so it is retried and never lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from passerelle.config import Settings
from passerelle.models import MailingList, OutboxMessage

# Header folding of our notices. With the default 78-column limit, Python's folder moves a whole Subject of
# 70-77 characters to a continuation line ("Subject:" then CRLF SP "[forum] Merci de confirmer..."), which
# readers unfold to a subject starting with two spaces. RFC 5322 2.1.1 allows 998 characters per line (78 is
# a SHOULD), so our headers are written unfolded. Bodies are encoded before this policy applies.
HEADER_POLICY = default_policy.clone(max_line_length=998)


def new_message_id(settings: Settings, kind: str = "notice") -> str:
    """A fresh Message-ID (without brackets) in our own domain."""
    return f"{kind}.{uuid.uuid4().hex}@{settings.lists.domain}"


def build_notice(
    settings: Settings,
    mailing_list: MailingList,
    *,
    to: str,
    subject: str,
    body: str,
    now: datetime,
    html: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    reply_to: str | None = None,
    from_local: str | None = None,
    auto_submitted: str = "auto-generated",
    extra_headers: Sequence[tuple[str, str]] = (),
    message_id: str | None = None,
) -> EmailMessage:
    """A complete notice from the list's -request address (or ``from_local``) to ``to``."""
    msg = EmailMessage()
    local = from_local or f"{mailing_list.name}-request"
    msg["From"] = Address(
        display_name=mailing_list.title or mailing_list.name, addr_spec=f"{local}@{settings.lists.domain}"
    )
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<{message_id or new_message_id(settings)}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
        refs = [r for r in references if r] + ([in_reply_to] if in_reply_to not in references else [])
        msg["References"] = " ".join(f"<{r}>" for r in refs)
    if reply_to:
        msg["Reply-To"] = reply_to
    # RFC 3834: mark machine-written mail so that vacation responders do not answer it (no mail loops).
    msg["Auto-Submitted"] = auto_submitted
    msg["List-Id"] = f"<{mailing_list.name}.{settings.lists.domain}>"
    msg["X-Loop"] = f"{mailing_list.name}@{settings.lists.domain}"
    for name, value in extra_headers:
        msg[name] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    msg.policy = HEADER_POLICY
    return msg


def queue_message(
    session: Session,
    *,
    kind: str,
    dedupe_key: str,
    recipient: str,
    payload: bytes,
    now: datetime,
    list_id: int | None,
) -> OutboxMessage | None:
    """Add one outbox row; returns None when the same (dedupe_key, recipient) is already queued."""
    existing = session.scalar(
        select(OutboxMessage).where(OutboxMessage.dedupe_key == dedupe_key, OutboxMessage.recipient == recipient)
    )
    if existing is not None:
        return None
    row = OutboxMessage(
        kind=kind, dedupe_key=dedupe_key[:200], recipient=recipient, payload=payload, status="pending",
        attempts=0, next_attempt_at=now, created_at=now, list_id=list_id, last_error="",
    )
    session.add(row)
    session.flush()
    return row


def queue_notice(
    session: Session,
    settings: Settings,
    mailing_list: MailingList,
    *,
    to: str,
    subject: str,
    body: str,
    now: datetime,
    kind: str = "notice",
    dedupe_key: str | None = None,
    **build_kwargs: object,
) -> OutboxMessage | None:
    """Build a notice and put it in the outbox (sent by gateway.delivery after commit)."""
    msg = build_notice(settings, mailing_list, to=to, subject=subject, body=body, now=now, **build_kwargs)  # type: ignore[arg-type]
    key = dedupe_key or f"{kind}:{msg['Message-ID'].strip('<>')}"
    return queue_message(
        session, kind=kind, dedupe_key=key, recipient=to, payload=bytes(msg), now=now, list_id=mailing_list.id
    )


__all__ = ["build_notice", "new_message_id", "queue_message", "queue_notice"]
