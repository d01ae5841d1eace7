"""Bounce score: each bounce adds to a subscription's score, the score halves every ``half_life_days``;
at ``threshold`` delivery is disabled, the member and the moderators are told, and the member can turn
delivery back on (mail command, signed link or account page) with :func:`reenable_delivery`.

Why scores rather than "disable at the first bounce": receiving MTAs fail transiently all the time
(mailbox full, greylisting, a provider's bad day). Hard bounces (the address is dead: 5.1.1 unknown user,
5.1.2 unknown domain...) each count, so a dead address stops hurting the forum's sending reputation after
a few posts. Soft bounces count at most once per UTC day (Mailman's habit), so that one bad day during a
busy thread does not cost a member their subscription. "Delayed" DSNs are only warnings (RFC 3464: the
MTA keeps trying) and abuse feedback reports are complaints, not bounces: both are recorded, not scored.

The stored score is exact at ``bounce_updated_at``; its value at any later time is
``score * 0.5 ** (elapsed / half_life)``. :func:`decay_scores` (a scheduled job) rebases stored scores to
``now`` and clears those that decayed to nothing; the value read at any time is the same whether it ran or not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.notices import queue_notice
from gateway.templates import render
from passerelle.config import Settings
from passerelle.models import BounceEvent, MailingList, Member, Subscription

log = logging.getLogger(__name__)

# Scores below this are set to 0 by the decay job (about 6 half-lives after a single soft bounce).
NEGLIGIBLE = 0.01
SCORED_ACTIONS = ("failed",)


class ReenableError(ValueError):
    """The subscription cannot be re-enabled (it was not disabled, or the member left the list)."""


@dataclass(frozen=True)
class BounceOutcome:
    event: BounceEvent
    # The score after this bounce (decayed to now first).
    score: float
    # False when the bounce was recorded but added nothing (soft bounce already counted today, a
    # delayed-delivery warning, abuse feedback, or no subscription for the address).
    counted: bool
    # True when this very bounce disabled delivery.
    disabled: bool


def decayed(score: float, since: datetime | None, now: datetime, half_life_days: float) -> float:
    """``score`` as it stands at ``now`` when it was exact at ``since``."""
    if score <= 0 or since is None:
        return max(score, 0.0)
    if half_life_days <= 0:
        raise ValueError(f"bounces.half_life_days must be positive, not {half_life_days!r}")
    elapsed_days = max((now - since).total_seconds(), 0.0) / 86400.0
    return score * 0.5 ** (elapsed_days / half_life_days)


def current_score(settings: Settings, subscription: Subscription, now: datetime) -> float:
    """The subscription's bounce score at ``now`` (decay applied)."""
    return decayed(subscription.bounce_score or 0.0, subscription.bounce_updated_at, now,
                   settings.bounces.half_life_days)


def find_subscription(session: Session, mailing_list_id: int, address: str) -> Subscription | None:
    """The subscription of ``address`` (any case) to the list, or None."""
    address = (address or "").strip().strip("<>").lower()
    if "@" not in address:
        return None
    return session.scalar(
        select(Subscription)
        .join(Member, Member.id == Subscription.member_id)
        .where(Subscription.list_id == mailing_list_id, Member.email == address)
    )


def _soft_already_counted_today(session: Session, subscription_id: int, now: datetime, exclude_id: int) -> bool:
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    count = session.scalar(
        select(func.count(BounceEvent.id)).where(
            BounceEvent.subscription_id == subscription_id,
            BounceEvent.hard.is_(False),
            BounceEvent.reason != "delayed",
            BounceEvent.reason != "feedback",
            BounceEvent.received_at >= day_start,
            BounceEvent.received_at <= now,
            BounceEvent.id != exclude_id,
        )
    )
    return bool(count)


def record_bounce(
    session: Session,
    settings: Settings,
    *,
    mailing_list: MailingList,
    address: str,
    hard: bool,
    now: datetime,
    subscription: Subscription | None = None,
    status: str | None = "",
    reason: str = "",
    diagnostic: str = "",
    action: str = "failed",
    inbound_id: int | None = None,
) -> BounceOutcome:
    """Record one bounced recipient as a BounceEvent and update the subscription's score.

    ``subscription`` is looked up from ``address`` when not given. ``action`` is the parser's
    BouncedRecipient.action: only "failed" is scored ("delayed" and "complained" are recorded only).
    Disabling delivery queues the notices in the same transaction (the caller commits).
    """
    if now.tzinfo is None:
        raise ValueError("record_bounce needs an aware datetime (UTC)")
    address = (address or "").strip().strip("<>").lower()
    if subscription is None:
        subscription = find_subscription(session, mailing_list.id, address)
    if action in ("delayed", "complained"):
        # Kept apart from scored soft bounces by their reason; the parser's own reason stays readable.
        label = "delayed" if action == "delayed" else "feedback"
        if reason and reason != label:
            diagnostic = f"[{reason}] {diagnostic or ''}".strip()
        reason = label
    event = BounceEvent(
        subscription_id=subscription.id if subscription else None,
        address=address[:320],
        hard=bool(hard) and action in SCORED_ACTIONS,
        status=(status or "")[:12],
        reason=(reason or "")[:40],
        diagnostic=(diagnostic or "")[:2000],
        inbound_id=inbound_id,
        received_at=now,
    )
    session.add(event)
    session.flush()
    if subscription is None:
        log.info("bounce for %s, who is not subscribed to %s: recorded only", address, mailing_list.name)
        return BounceOutcome(event, 0.0, counted=False, disabled=False)

    score = current_score(settings, subscription, now)
    counted = action in SCORED_ACTIONS and (
        hard or not _soft_already_counted_today(session, subscription.id, now, event.id)
    )
    if counted:
        score += settings.bounces.hard_score if hard else settings.bounces.soft_score
        # (updated_at is left alone: it marks changes made by people, see digests.jobs)
        subscription.bounce_score = score
        subscription.bounce_updated_at = now
    disabled = False
    if counted and subscription.status == "active" and score >= settings.bounces.threshold:
        disable_delivery(session, settings, subscription, now=now, score=score, event=event)
        disabled = True
    log.info(
        "bounce for %s on %s (%s %s %s): score %.2f%s%s", address, mailing_list.name,
        "hard" if event.hard else "soft", event.status or "-", event.reason or "-", score,
        "" if counted else " (not counted)", " -> delivery disabled" if disabled else "",
    )
    return BounceOutcome(event, score, counted=counted, disabled=disabled)


def _moderators(session: Session, list_id: int) -> list[Member]:
    return list(
        session.scalars(
            select(Member)
            .join(Subscription, Subscription.member_id == Member.id)
            .where(
                Subscription.list_id == list_id,
                Subscription.role.in_(("moderator", "owner")),
                Subscription.status == "active",
            )
            .order_by(Member.email)
        )
    )


def account_url(settings: Settings) -> str:
    return f"{settings.site.base_url.rstrip('/')}/account"


def disable_delivery(
    session: Session, settings: Settings, subscription: Subscription, *, now: datetime, score: float,
    event: BounceEvent,
) -> None:
    """Disable delivery to a bouncing subscriber and queue the notices.

    The member's own notice goes to the bouncing address anyway: many bounces are transient (a full
    mailbox, a provider's outage) and the member may well read it. The moderators are told too, since
    they can reach the member another way.
    """
    mailing_list = session.get(MailingList, subscription.list_id)
    member = subscription.member
    what = " ".join(p for p in (event.status, event.reason) if p) or ("hard" if event.hard else "soft")
    subscription.status = "disabled"
    subscription.disabled_reason = f"bounces: score {score:.1f} >= {settings.bounces.threshold:g} (last: {what})"[:200]
    subscription.updated_at = now
    request_address = settings.list_address(mailing_list.name, "-request")
    fields = {
        "list": mailing_list.title or mailing_list.name,
        "list_address": settings.list_address(mailing_list.name),
        "request_address": request_address,
        "email": member.email,
        "member_name": member.display(),
        "score": f"{score:.1f}",
        "threshold": f"{settings.bounces.threshold:g}",
        "last_error": (event.diagnostic or what)[:300],
        "account_url": account_url(settings),
        "reenable_url": reenable_url(settings, subscription, now=now),
        "command": REENABLE_COMMAND,
    }
    language = member.language or mailing_list.language or settings.site.default_language
    subject, body = render("bounce_disabled", language, **fields)
    queue_notice(
        session, settings, mailing_list, to=member.email, subject=subject, body=body, now=now,
        dedupe_key=f"bounce-disabled:{subscription.id}:{event.id}",
    )
    for moderator in _moderators(session, mailing_list.id):
        subject, body = render(
            "bounce_disabled_moderators", moderator.language or mailing_list.language or "fr", **fields
        )
        queue_notice(
            session, settings, mailing_list, to=moderator.email, subject=subject, body=body, now=now,
            kind="moderation", dedupe_key=f"bounce-disabled:{subscription.id}:{event.id}",
        )


# The mail command that turns delivery back on (gateway.commands calls reenable_delivery for it).
REENABLE_COMMAND = "enable"
REENABLE_PURPOSE = "reenable"


def reenable_url(settings: Settings, subscription: Subscription, *, now: datetime | None = None) -> str:
    """A signed link that turns delivery back on without signing in (archive_web.digest_links)."""
    from passerelle.tokens import sign

    token = sign(settings, REENABLE_PURPOSE, {"s": subscription.id}, now=now)
    return f"{settings.site.base_url.rstrip('/')}/d/reenable/{token}"


def reenable_delivery(session: Session, subscription: Subscription, now: datetime) -> bool:
    """Turn delivery back on for a subscription disabled by bounces; the score starts again from 0.

    Returns True when delivery was disabled and is now on, False when it was already on (the score is
    reset anyway: the member says the address works). Raises ReenableError for a subscription that is
    unsubscribed or waiting for confirmation: those need a new subscription, not a re-enable.
    """
    if subscription.status in ("unsubscribed", "pending"):
        raise ReenableError(
            f"the subscription of {subscription.member.email} is {subscription.status}: subscribe again instead"
        )
    was_disabled = subscription.status == "disabled"
    subscription.status = "active"
    subscription.bounce_score = 0.0
    subscription.bounce_updated_at = now
    subscription.disabled_reason = ""
    subscription.updated_at = now
    session.flush()
    if was_disabled:
        log.info("delivery re-enabled for %s (subscription %s)", subscription.member.email, subscription.id)
    return was_disabled


def decay_scores(session: Session, settings: Settings, *, now: datetime) -> int:
    """Rebase every positive score to ``now`` (clearing negligible ones); returns how many rows changed.

    Disabled subscriptions keep decaying too: their score is informative only until the member
    re-enables delivery (which resets it).
    """
    changed = 0
    rows = session.scalars(select(Subscription).where(Subscription.bounce_score > 0)).all()
    for sub in rows:
        value = current_score(settings, sub, now)
        if value < NEGLIGIBLE:
            value = 0.0
        if value != sub.bounce_score:
            sub.bounce_score = value
            sub.bounce_updated_at = now
            changed += 1
    session.flush()
    return changed


__all__ = [
    "REENABLE_COMMAND",
    "REENABLE_PURPOSE",
    "BounceOutcome",
    "ReenableError",
    "account_url",
    "current_score",
    "decay_scores",
    "decayed",
    "disable_delivery",
    "find_subscription",
    "record_bounce",
    "reenable_delivery",
    "reenable_url",
]
