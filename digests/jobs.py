"""The scheduled jobs. Each one is idempotent and takes ``now=``: running it twice, after a restart, or in
two processes at once changes nothing the second time. Their state lives in the database, never in the
scheduler.

Digests: for every active subscription in daily or weekly mode, the periods due since the last one done
are computed in the member's time zone (digests.periods). Each period is then done in one transaction
that writes its DigestRun row (UNIQUE(subscription, period, period_key)) and, unless the digest is empty,
its outbox row (UNIQUE(dedupe_key, recipient)): a crash before the commit leaves nothing, so the next tick
does the period again; a second process doing the same period fails on the unique key and rolls back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gateway.notices import queue_message
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.models import DigestRun, InboundMessage, MailingList, Subscription

from .compose import Recipient, build_digest
from .content import Activity, collect_activity, delivered_for, digest_messages, for_member, muted_for
from .periods import Period, due_periods, weekday_index, zone_for

log = logging.getLogger(__name__)

# Spool rows in these states may still become archived messages.
_UNFINISHED_SPOOL = ("new", "processing")


@dataclass
class DigestTickResult:
    sent: int = 0
    empty: int = 0
    # Already done by another process (lost the race on the unique key).
    raced: int = 0
    # Waiting for spooled mail of the period to be processed; retried at the next tick.
    waiting: int = 0
    failed: int = 0
    details: list[str] = field(default_factory=list)


def _last_untils(session: Session) -> dict[int, datetime]:
    """{subscription id: end of its newest digest, daily or weekly}, in one query."""
    query = select(DigestRun.subscription_id, func.max(DigestRun.until)).group_by(DigestRun.subscription_id)
    return dict(session.execute(query).all())  # type: ignore[arg-type]


def _periods_for(
    sub: Subscription, last_until: datetime | None, now: datetime, *, hour: int, weekday: int, zone: ZoneInfo,
    catch_up_days: int,
) -> list[Period]:
    """The periods to do now for one subscription.

    * Never had a digest: the newest due period, unless it ended before the member subscribed.
    * Changed since its last digest (daily <-> weekly, back from instant or no mail, re-enabled after
      bounces: Subscription.updated_at is later): one digest, the newest due, covering everything since that
      last digest (if within catch_up_days), so that nothing is lost between the two modes and nothing
      already sent comes again.
    * Otherwise every period due since the last one (catch-up after downtime, one per period).
    """
    kind = sub.delivery_mode
    if last_until is None or (sub.updated_at is not None and sub.updated_at > last_until):
        newest = due_periods(kind, now, zone, hour=hour, weekday=weekday, last_until=None,
                             catch_up_days=catch_up_days)[0]
        if last_until is None:
            return [newest] if newest.until > sub.created_at else []
        if newest.until <= last_until:
            return []
        if last_until >= now - timedelta(days=catch_up_days) or last_until > newest.since:
            newest = Period(kind, newest.local_date, last_until, newest.until)
        return [newest]
    return due_periods(kind, now, zone, hour=hour, weekday=weekday, last_until=last_until,
                       catch_up_days=catch_up_days)


def _spool_settled(session: Session, until: datetime, now: datetime, wait_minutes: int) -> bool:
    """True when no mail received before ``until`` is still waiting in the spool, or we waited enough."""
    if now - until >= timedelta(minutes=wait_minutes):
        return True
    pending = session.scalar(
        select(func.count(InboundMessage.id)).where(
            InboundMessage.received_at < until, InboundMessage.status.in_(_UNFINISHED_SPOOL)
        )
    )
    return not pending


def unsubscribe_url(settings: Settings, subscription: Subscription, *, now: datetime) -> str:
    """The subscription's one-click unsubscribe URL (RFC 8058), the same one its list copies carry."""
    from gateway.delivery import unsubscribe_url as copy_unsubscribe_url

    return copy_unsubscribe_url(settings, subscription.mailing_list.name, subscription.member.email, now=now)


def _list_headers(settings: Settings, mailing_list: MailingList, url: str) -> list[tuple[str, str]]:
    """The RFC 2369/8058 headers list copies carry, minus those naming one message (Archived-At)."""
    from gateway.compose import CopyHeaders, list_headers

    info = CopyHeaders(
        list_name=mailing_list.name, list_title=mailing_list.title, topic_id=0, message_id="", unsubscribe_url=url
    )
    return [(name, value) for name, value in list_headers(settings, info) if name.lower() != "archived-at"]


def _do_period(
    factory: sessionmaker[Session],
    settings: Settings,
    subscription_id: int,
    period: Period,
    *,
    now: datetime,
    activities: dict[tuple[int, datetime, datetime], Activity],
) -> str:
    """Do one digest period of one subscription in one transaction: "sent", "empty", "raced", "waiting"
    or "gone" (the subscription changed mode or status meanwhile)."""
    try:
        with session_scope(factory) as session:
            sub = session.get(Subscription, subscription_id)
            if sub is None or sub.status != "active" or sub.delivery_mode != period.kind:
                return "gone"
            done = session.scalar(
                select(DigestRun.id).where(
                    DigestRun.subscription_id == sub.id, DigestRun.period == period.kind,
                    DigestRun.period_key == period.key,
                )
            )
            if done is not None:
                return "raced"
            if not _spool_settled(session, period.until, now, settings.digests.spool_wait_minutes):
                return "waiting"
            mailing_list = sub.mailing_list
            cache_key = (mailing_list.id, period.since, period.until)
            activity = activities.get(cache_key)
            if activity is None:
                activity = collect_activity(
                    session, mailing_list, period.since, period.until,
                    messages_per_topic=settings.digests.messages_per_topic,
                )
                activities[cache_key] = activity
            muted_topics, followed_topics, muted_categories = muted_for(session, sub.member_id)
            content = for_member(
                activity, muted_topics=muted_topics, followed_topics=followed_topics,
                muted_categories=muted_categories,
                # Followed topics and categories reached the member at once: not twice (digests.content).
                delivered=delivered_for(session, activity, sub.member.email),
                load=lambda pks: digest_messages(session, pks),
            )
            run = DigestRun(
                subscription_id=sub.id, period=period.kind, period_key=period.key, since=period.since,
                until=period.until, message_count=content.message_count,
                outcome="empty" if content.is_empty else "sent", created_at=now,
            )
            session.add(run)
            if not content.is_empty:
                member = sub.member
                recipient = Recipient(
                    member=member, subscription_id=sub.id,
                    language=member.language or mailing_list.language or settings.site.default_language,
                    zone=zone_for(member.timezone, settings.site.default_timezone),
                )
                url = unsubscribe_url(settings, sub, now=now)
                msg = build_digest(
                    settings, mailing_list, content, period, recipient, now=now, unsubscribe_url=url,
                    list_headers=_list_headers(settings, mailing_list, url),
                )
                row = queue_message(
                    session, kind="digest", dedupe_key=f"digest:{sub.id}:{period.kind}:{period.key}",
                    recipient=member.email, payload=bytes(msg), now=now, list_id=mailing_list.id,
                )
                if row is None:
                    # An outbox row without its DigestRun cannot exist (same transaction); a leftover from
                    # a manual fix must not be sent twice either.
                    log.warning("digest %s %s for subscription %s already in the outbox",
                                period.kind, period.key, sub.id)
            session.flush()
            log.info(
                "digest %s %s for %s: %s (%d topics, %d messages, %s .. %s)", period.kind, period.key,
                sub.member.email, run.outcome, len(content.topics), content.message_count,
                period.since.isoformat(), period.until.isoformat(),
            )
            return run.outcome
    except IntegrityError:
        log.info("digest %s %s for subscription %s was done by another process", period.kind, period.key,
                 subscription_id)
        return "raced"


def send_due_digests(settings: Settings, factory: sessionmaker[Session], *, now: datetime) -> DigestTickResult:
    """Queue every digest due at ``now`` (and those missed since the last run); never one twice."""
    if now.tzinfo is None:
        raise ValueError("send_due_digests needs an aware datetime (UTC)")
    hour = int(settings.digests.send_hour)
    weekday = weekday_index(settings.digests.weekly_day)
    result = DigestTickResult()
    work: list[tuple[int, Period]] = []
    with session_scope(factory) as session:
        subs = session.scalars(
            select(Subscription)
            .where(Subscription.status == "active", Subscription.delivery_mode.in_(("daily", "weekly")))
            .order_by(Subscription.id)
        ).all()
        last_untils = _last_untils(session) if subs else {}
        for sub in subs:
            zone = zone_for(sub.member.timezone, settings.site.default_timezone)
            for period in _periods_for(sub, last_untils.get(sub.id), now, hour=hour, weekday=weekday, zone=zone,
                                       catch_up_days=settings.digests.catch_up_days):
                work.append((sub.id, period))
    activities: dict[tuple[int, datetime, datetime], Activity] = {}
    for subscription_id, period in work:
        try:
            outcome = _do_period(factory, settings, subscription_id, period, now=now, activities=activities)
        except Exception:
            # One subscriber's broken data must not stop the others' digests; the period is retried next tick.
            log.exception("digest %s %s for subscription %s failed", period.kind, period.key, subscription_id)
            result.failed += 1
            result.details.append(f"{subscription_id}:{period.kind}:{period.key}:failed")
            continue
        if outcome == "sent":
            result.sent += 1
        elif outcome == "empty":
            result.empty += 1
        elif outcome == "raced":
            result.raced += 1
        elif outcome == "waiting":
            result.waiting += 1
        result.details.append(f"{subscription_id}:{period.kind}:{period.key}:{outcome}")
    return result


def decay_bounce_scores(settings: Settings, factory: sessionmaker[Session], *, now: datetime) -> int:
    """Write decayed bounce scores back (gateway.bounce_score.decay_scores); returns rows changed."""
    from gateway.bounce_score import decay_scores

    with session_scope(factory) as session:
        return decay_scores(session, settings, now=now)


__all__ = [
    "DigestTickResult",
    "decay_bounce_scores",
    "send_due_digests",
    "unsubscribe_url",
]
