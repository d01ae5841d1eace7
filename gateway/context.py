"""What every step of processing one inbound message needs, passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from passerelle.config import Settings
from passerelle.models import InboundMessage, MailingList, Member, Subscription

if TYPE_CHECKING:
    from passerelle.mail.parse import ParsedMessage


@dataclass
class MailContext:
    session: Session
    settings: Settings
    now: datetime
    inbound: InboundMessage
    parsed: ParsedMessage
    mailing_list: MailingList
    # The member whose address is in From (None for strangers) and their subscription to this list.
    sender: Member | None
    subscription: Subscription | None
    # Local part the mail was sent to: "forum", "forum-request", "forum+subscribe", "forum-bounces+...".
    recipient_local: str
    # A dnspython-compatible resolver (``resolve(name, rdtype)``) for DKIM/DMARC; tests pass a stub.
    resolver: Any = None

    @property
    def is_moderator(self) -> bool:
        return self.subscription is not None and self.subscription.is_moderator
