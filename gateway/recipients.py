"""Who a mail is for, both ways.

Inbound: which of our addresses an envelope recipient is (``forum@``, ``forum-request@``, ``forum+subscribe@``,
``forum-bounces+alice=example.org@``, ``forum-owner@``...). Outbound: which members receive an instant copy
of a post (one query, whatever the number of subscribers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from passerelle.models import CategoryFollow, MailingList, Member, OutboxMessage, Subscription, TopicFollow, UTCDateTime

# Roles of our addresses. "post": the list itself; "request": commands (LIST-request, LIST+cmd, and the
# Mailman-style aliases LIST-join/-leave/-subscribe/-unsubscribe/-confirm); "bounces": the return path of
# every copy (VERP: LIST-bounces+alice=example.org); "owner": the humans running the list (RFC 2142 habit).
ROLES = ("post", "request", "bounces", "owner")
_REQUEST_ALIASES = {
    "request": "",
    "join": "subscribe",
    "subscribe": "subscribe",
    "leave": "unsubscribe",
    "unsubscribe": "unsubscribe",
    "confirm": "confirm",
}


@dataclass(frozen=True)
class ListAddress:
    """One of our addresses, understood."""

    list_name: str
    role: str
    # For "request": the command named by the address ("subscribe" for LIST+subscribe or LIST-join; "" for
    # LIST-request, whose commands are in the body); for "bounces": the VERP part ("alice=example.org").
    detail: str
    # The whole local part, lower-cased ("forum+subscribe"): MailContext.recipient_local.
    local: str


def split_address(address: str) -> tuple[str, str]:
    """("Forum+Help", "forum.example.org") from "<Forum+Help@Forum.Example.org>"; ("", "") when no @."""
    address = address.strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return "", ""
    return local, domain.strip().rstrip(".").lower()


def classify_local(local: str, list_names: Iterable[str]) -> ListAddress | None:
    """Which list address ``local`` is, given the names of the lists that exist; None when none."""
    lowered = local.strip().lower()
    # Longest names first: with lists "forum" and "forum-dev", "forum-dev-request" belongs to forum-dev.
    for name in sorted({n.lower() for n in list_names}, key=len, reverse=True):
        if lowered == name:
            return ListAddress(name, "post", "", lowered)
        if lowered.startswith(name + "+"):
            command = lowered[len(name) + 1 :]
            if command:
                return ListAddress(name, "request", command, lowered)
            continue
        if not lowered.startswith(name + "-"):
            continue
        rest = lowered[len(name) + 1 :]
        base, plus, extension = rest.partition("+")
        if base == "bounces":
            return ListAddress(name, "bounces", extension, lowered)
        if base == "owner" and not plus:
            return ListAddress(name, "owner", "", lowered)
        if base in _REQUEST_ALIASES:
            command = _REQUEST_ALIASES[base]
            if extension:
                # LIST-confirm+<token>: the token rides in the address (Mailman 3 habit).
                command = f"{command}+{extension}" if command else extension
            return ListAddress(name, "request", command, lowered)
    return None


def list_names(session: Session) -> list[str]:
    return list(session.scalars(select(MailingList.name).order_by(MailingList.name)))


# Who gets an instant copy of a post, as SQL run by the database (no recipient travels through Python, no
# query per member): active subscriptions in instant mode, minus members who muted the topic, minus those
# who muted the topic's category unless they follow the topic itself; plus digest-mode members who follow
# the topic or its category (they asked to hear about it at once; their digest then leaves out what these
# rows sent, digests.content.delivered_for). "nomail" members get nothing. A member
# has one subscription per list, so every address comes once. Plain SQL that SQLite and PostgreSQL share;
# built once, so nothing is compiled per message.
_FROM_RECIPIENTS = (
    f" FROM {Subscription.__tablename__} s"
    f" JOIN {Member.__tablename__} m ON m.id = s.member_id"
    f" LEFT JOIN {TopicFollow.__tablename__} tf ON tf.member_id = s.member_id AND tf.topic_id = :topic_id"
    f" LEFT JOIN {CategoryFollow.__tablename__} cf ON cf.member_id = s.member_id AND cf.category_id = :category_id"
    " WHERE s.list_id = :list_id AND s.status = 'active' AND m.email <> :exclude AND ("
    " (s.delivery_mode = 'instant' AND NOT (COALESCE(tf.mode, '') = 'mute'"
    "   OR (COALESCE(cf.mode, '') = 'mute' AND COALESCE(tf.mode, '') <> 'follow')))"
    " OR (s.delivery_mode IN ('daily', 'weekly') AND (COALESCE(tf.mode, '') = 'follow'"
    "   OR (COALESCE(cf.mode, '') = 'follow' AND COALESCE(tf.mode, '') <> 'mute'))))"
)
_SELECT_RECIPIENTS = text("SELECT m.email" + _FROM_RECIPIENTS)
_QUEUE_COPIES = text(
    f"INSERT INTO {OutboxMessage.__tablename__} (recipient, kind, dedupe_key, message_pk, list_id, status,"
    " attempts, next_attempt_at, last_error, claimed_by, created_at)"
    " SELECT m.email, 'post', :dedupe_key, :message_pk, :list_id, 'pending', 0, :now, '', '', :now"
    + _FROM_RECIPIENTS
).bindparams(bindparam("now", type_=UTCDateTime()))


def _params(
    mailing_list_id: int, topic_id: int, category_id: int | None, author_email: str | None, send_copy_to_author: bool
) -> dict[str, Any]:
    exclude = "" if send_copy_to_author or not author_email else author_email.lower()
    return {"list_id": mailing_list_id, "topic_id": topic_id, "category_id": category_id, "exclude": exclude}


def post_recipients(
    session: Session,
    mailing_list_id: int,
    *,
    topic_id: int,
    category_id: int | None,
    author_email: str | None,
    send_copy_to_author: bool,
) -> list[str]:
    """Addresses that get an instant copy of a post in ``topic_id``, sorted (see _FROM_RECIPIENTS)."""
    params = _params(mailing_list_id, topic_id, category_id, author_email, send_copy_to_author)
    return sorted({e.lower() for e in session.scalars(_SELECT_RECIPIENTS, params)})


def queue_post_copies(
    session: Session,
    mailing_list_id: int,
    *,
    message_pk: int,
    topic_id: int,
    category_id: int | None,
    author_email: str | None,
    send_copy_to_author: bool,
    now: datetime,
) -> int:
    """Outbox rows (kind "post", dedupe_key "post:<message pk>") for every recipient, in one INSERT ... SELECT;
    returns how many were queued."""
    params = _params(mailing_list_id, topic_id, category_id, author_email, send_copy_to_author)
    params.update(dedupe_key=f"post:{message_pk}", message_pk=message_pk, now=now)
    result = session.execute(_QUEUE_COPIES, params)
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = [
    "ROLES", "ListAddress", "classify_local", "list_names", "post_recipients", "queue_post_copies", "split_address",
]
