"""Who a mail is for, both ways.

Inbound: which of our addresses an envelope recipient is (``forum@``, ``forum-request@``, ``forum+subscribe@``,
``forum-bounces+alice=example.org@``, ``forum-owner@``...). Outbound: which members receive an instant copy
of a post (one query, whatever the number of subscribers).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from passerelle.models import CategoryFollow, MailingList, Member, Subscription, TopicFollow

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


def recipients_query(
    mailing_list_id: int,
    *,
    topic_id: int,
    category_id: int | None,
    exclude_email: str | None = None,
    columns: Sequence[Any] = (),
) -> Select[Any]:
    """SELECT of the members who get an instant copy of a post in ``topic_id`` (Member.email first, then
    ``columns``): one row per member (a member has one subscription per list).

    Active subscriptions in instant mode, minus members who muted the topic, minus those who muted the
    topic's category (unless they follow the topic itself); plus digest-mode members who explicitly follow
    the topic or its category (they asked to hear about it at once). Members in "nomail" mode get nothing.
    """
    topic_mode = func.coalesce(TopicFollow.mode, "")
    query = (
        select(Member.email, *columns)
        .select_from(Subscription)
        .join(Member, Member.id == Subscription.member_id)
        .outerjoin(
            TopicFollow, and_(TopicFollow.member_id == Subscription.member_id, TopicFollow.topic_id == topic_id)
        )
        .where(Subscription.list_id == mailing_list_id, Subscription.status == "active")
    )
    if category_id is None:
        muted = topic_mode == "mute"
        followed = topic_mode == "follow"
    else:
        query = query.outerjoin(
            CategoryFollow,
            and_(CategoryFollow.member_id == Subscription.member_id, CategoryFollow.category_id == category_id),
        )
        category_mode = func.coalesce(CategoryFollow.mode, "")
        muted = or_(topic_mode == "mute", and_(category_mode == "mute", topic_mode != "follow"))
        followed = or_(topic_mode == "follow", and_(category_mode == "follow", topic_mode != "mute"))
    query = query.where(
        or_(
            and_(Subscription.delivery_mode == "instant", ~muted),
            and_(Subscription.delivery_mode.in_(("daily", "weekly")), followed),
        )
    )
    if exclude_email:
        # Member.email is stored lower-cased.
        query = query.where(Member.email != exclude_email.lower())
    return query


def post_recipients(
    session: Session,
    mailing_list_id: int,
    *,
    topic_id: int,
    category_id: int | None,
    author_email: str | None,
    send_copy_to_author: bool,
) -> list[str]:
    """Addresses that get an instant copy of a post in ``topic_id``, sorted (see :func:`recipients_query`)."""
    query = recipients_query(
        mailing_list_id, topic_id=topic_id, category_id=category_id,
        exclude_email=None if send_copy_to_author else author_email,
    )
    return sorted({e.lower() for e in session.scalars(query)})


__all__ = [
    "ROLES", "ListAddress", "classify_local", "list_names", "post_recipients", "recipients_query", "split_address",
]
