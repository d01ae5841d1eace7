"""The moderation queue: hold a post, let moderators approve, reject or discard it (by mail or on the web),
and expire what nobody decided.

Nothing held is lost: the raw bytes stay in the spool row (status "held") whatever the decision; a rejected,
discarded or expired message is only marked "dropped" with the reason, for operators.

Moderators decide by answering the notice: its Reply-To is ``LIST+mod-<token>@domain`` and its Message-ID
``mod-<token>@domain`` (so a reply sent to ``LIST-request@`` still names the token in In-Reply-To). The
first line of the answer is ``approve``, ``reject <reason>`` or ``discard``, in any of the five languages
(see gateway.command_parse.DECISION_ALIASES). The token is the capability; the answer must also come
from a moderator of the list, who is recorded as the decider.

Approving puts the spool row back to status "new" (``reason = "approved:<held id>"`` for operators): the
worker processes it again as a post, and the membership and size rules let it through because
:func:`is_approved` finds the approved HeldMessage.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.command_parse import Decision, parse_decision, phrase
from gateway.notices import queue_notice
from gateway.templates import render
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.models import HeldMessage, InboundMessage, MailingList, Member, ModerationAction, Subscription

if TYPE_CHECKING:
    from gateway.context import MailContext

log = logging.getLogger(__name__)

APPROVED_PREFIX = "approved:"
# Lines of the held post quoted in the moderators' notice.
EXCERPT_LINES = 40
EXCERPT_CHARS = 4000
EXPIRE_BATCH = 500


def new_token() -> str:
    """96 random bits as 24 lower-case hex digits: safe in a local part, whatever the MTA does to case."""
    return secrets.token_hex(12)


def decision_address(settings: Settings, mailing_list: MailingList, token: str) -> str:
    return f"{mailing_list.name}+mod-{token}@{settings.lists.domain}"


def notice_message_id(settings: Settings, token: str) -> str:
    return f"mod-{token}@{settings.lists.domain}"


def moderation_url(settings: Settings, held: HeldMessage | None = None) -> str:
    """The web moderation queue, or one held message's page (archive_web.moderation)."""
    base = f"{settings.site.base_url.rstrip('/')}/moderation"
    return f"{base}/held/{held.id}" if held is not None else f"{base}/"


def moderators(session: Session, mailing_list: MailingList) -> list[Member]:
    """Active moderators and owners of the list."""
    return list(
        session.scalars(
            select(Member)
            .join(Subscription, Subscription.member_id == Member.id)
            .where(
                Subscription.list_id == mailing_list.id,
                Subscription.role.in_(("moderator", "owner")),
                Subscription.status.in_(("active", "disabled")),
            )
            .order_by(Member.id)
        ).unique()
    )


def is_moderator(session: Session, mailing_list: MailingList, member: Member | None) -> bool:
    if member is None:
        return False
    sub = session.scalar(
        select(Subscription).where(Subscription.list_id == mailing_list.id, Subscription.member_id == member.id)
    )
    return sub is not None and sub.is_moderator and sub.status in ("active", "disabled")


def is_approved(session: Session, inbound: InboundMessage) -> bool:
    """True when a moderator approved this spool row: the membership and hold rules must let it through.

    Asked of the database, not of ``inbound.reason``: a retry after a failure rewrites the reason.
    """
    if inbound.id is None:
        return False
    return session.scalar(
        select(HeldMessage.id).where(HeldMessage.inbound_id == inbound.id, HeldMessage.decision == "approved")
    ) is not None


def _language(session: Session, email: str, mailing_list: MailingList, settings: Settings) -> str:
    member = session.scalar(select(Member).where(Member.email == email.lower())) if email else None
    if member is not None and member.language:
        return member.language
    return mailing_list.language or settings.site.default_language


def _excerpt(text: str) -> str:
    lines = text.strip().splitlines()
    cut = "\n".join(lines[:EXCERPT_LINES])
    if len(cut) > EXCERPT_CHARS:
        cut = cut[:EXCERPT_CHARS]
    more = len(lines) > EXCERPT_LINES or len(cut) < len(text.strip())
    body = "\n".join(f"| {line}" for line in cut.splitlines())
    return body + ("\n| [...]" if more else "")


def _one_line(value: str) -> str:
    """Decoded headers may hold line breaks (an encoded "=0A"): never let them into a header we write."""
    return " ".join((value or "").split())


def _date(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def hold_message(ctx: MailContext, reason: str) -> HeldMessage:
    """Hold the post being processed: a HeldMessage row, the spool row marked "held", a notice to every
    moderator and one to the author. Running it again for the same spool row changes nothing."""
    session, settings, ml = ctx.session, ctx.settings, ctx.mailing_list
    existing = session.scalar(select(HeldMessage).where(HeldMessage.inbound_id == ctx.inbound.id))
    if existing is not None:
        ctx.inbound.status = "held"
        return existing
    parsed = ctx.parsed
    held = HeldMessage(
        inbound_id=ctx.inbound.id,
        list_id=ml.id,
        sender=(parsed.from_addr or ctx.inbound.envelope_from or "")[:320],
        subject=_one_line(parsed.subject)[:500],
        # The English sentence for the moderation page; the notices below put a rule's Localised reason in
        # each reader's language (gateway.templates.render).
        reason=str(reason),
        token=new_token(),
        created_at=ctx.now,
        expires_at=ctx.now + timedelta(days=settings.moderation.hold_expiry_days),
        decision=None,
        decision_reason="",
    )
    session.add(held)
    ctx.inbound.status = "held"
    ctx.inbound.reason = f"held: {reason}"[:2000]
    session.flush()

    fields = {
        "list": ml.name,
        "list_title": ml.title or ml.name,
        "sender": held.sender or "?",
        "sender_name": _one_line(parsed.from_name) or held.sender or "?",
        "subject": held.subject or "-",
        "reason": reason,
        "excerpt": _excerpt(parsed.text or ""),
        "attachments": len(parsed.attachments),
        "expires": _date(held.expires_at),
        "reply_address": decision_address(settings, ml, held.token),
        "moderation_url": moderation_url(settings, held),
        "held_id": held.id,
        "token": held.token,
    }
    mods = moderators(session, ml)
    if not mods:
        log.warning("held #%s <%s> for %s: the list has no moderator to decide", held.id,
                    ctx.inbound.message_id_header, ml.name)
    for mod in mods:
        subject, body = render("held_notice", mod.language or ml.language, **fields)
        queue_notice(
            session, settings, ml, to=mod.email, subject=subject, body=body, now=ctx.now, kind="moderation",
            dedupe_key=f"held:{held.id}:notice", reply_to=fields["reply_address"],
            message_id=notice_message_id(settings, held.token),
        )
    if held.sender:
        language = ctx.sender.language if ctx.sender is not None else (ml.language or settings.site.default_language)
        subject, body = render("held_author", language, **fields)
        queue_notice(
            session, settings, ml, to=held.sender, subject=subject, body=body, now=ctx.now, kind="notice",
            dedupe_key=f"held:{held.id}:author", in_reply_to=parsed.message_id or None,
        )
    log.info("held #%s <%s> from %s: %s (%d moderators told)", held.id, ctx.inbound.message_id_header,
             held.sender, reason, len(mods))
    return held


@dataclass(frozen=True)
class DecisionResult:
    """What a decision did: ``changed`` is False when the message was already decided (or expired)."""

    held: HeldMessage
    action: str
    changed: bool
    message: str


def decide_held(
    session: Session,
    settings: Settings,
    held: HeldMessage,
    action: str,
    *,
    actor: Member | None,
    now: datetime,
    reason: str = "",
    via: str = "mail",
    language: str = "en",
) -> DecisionResult:
    """Approve, reject or discard ``held`` (also called by the web moderation page, with via="web").

    ``message`` is one localised sentence for the moderator. Rejecting mails the reason to the author.
    """
    if action not in ("approve", "reject", "discard"):
        raise ValueError(f"unknown moderation decision {action!r}")
    ml = session.get(MailingList, held.list_id)
    if ml is None:
        raise ValueError(f"held message #{held.id} belongs to no list")
    # An expired message can still be decided (its raw bytes are kept); a decided one cannot.
    if held.decision is not None and held.decision != "expired":
        who = ""
        if held.decided_by_id:
            decider = session.get(Member, held.decided_by_id)
            who = decider.display() if decider else ""
        message = phrase("held.already", language, id=held.id, decision=phrase(f"decision.{held.decision}", language),
                         who=who or "-", when=_date(held.decided_at) if held.decided_at else "-")
        return DecisionResult(held, action, False, message)
    inbound = session.get(InboundMessage, held.inbound_id)
    held.decided_by_id = actor.id if actor is not None else None
    held.decided_at = now
    held.decision_reason = reason
    author_language = _language(session, held.sender, ml, settings)
    fields = {"list": ml.name, "list_title": ml.title or ml.name, "subject": held.subject or "-",
              "reason": reason or "-", "sender": held.sender}
    if action == "approve":
        held.decision = "approved"
        if inbound is not None:
            # The worker takes "new" rows: the post path runs again, and is_approved() lets it through.
            inbound.status = "new"
            inbound.reason = f"{APPROVED_PREFIX}{held.id}"
            inbound.attempts = 0
            inbound.claimed_by = ""
            inbound.claimed_at = None
    elif action == "reject":
        held.decision = "rejected"
        if inbound is not None:
            inbound.status = "dropped"
            inbound.reason = f"rejected by a moderator: {reason}"[:2000] if reason else "rejected by a moderator"
        if held.sender:
            subject, body = render("held_rejected", author_language, **fields)
            queue_notice(session, settings, ml, to=held.sender, subject=subject, body=body, now=now,
                         kind="notice", dedupe_key=f"held:{held.id}:rejected")
    else:
        held.decision = "discarded"
        if inbound is not None:
            inbound.status = "dropped"
            inbound.reason = "discarded by a moderator"
    session.add(ModerationAction(
        list_id=ml.id, topic_id=None, actor_id=held.decided_by_id, action=action,
        detail=f"held #{held.id} from {held.sender}: {held.subject}" + (f" — {reason}" if reason else ""),
        via=via[:16], created_at=now,
    ))
    session.flush()
    log.info("held #%s (inbound #%s) %s by %s via %s", held.id, held.inbound_id, held.decision,
             actor.email if actor else "?", via)
    message = phrase(f"held.{held.decision}", language, id=held.id, subject=held.subject or "-",
                     sender=held.sender or "?", reason=reason or "-")
    return DecisionResult(held, action, True, message)


def held_by_token(session: Session, token: str) -> HeldMessage | None:
    return session.scalar(select(HeldMessage).where(HeldMessage.token == token.lower()))


def handle_decision_mail(ctx: MailContext, held: HeldMessage, new_text: str, language: str) -> list[str]:
    """A moderator's answer to a held notice; returns the result lines for the reply."""
    if held.list_id != ctx.mailing_list.id:
        return [phrase("held.unknown", language)]
    if not is_moderator(ctx.session, ctx.mailing_list, ctx.sender):
        log.warning("decision on held #%s from %s, who is not a moderator of %s: refused", held.id,
                    ctx.parsed.from_addr, ctx.mailing_list.name)
        return [phrase("held.not_moderator", language, list=ctx.mailing_list.title or ctx.mailing_list.name)]
    decision: Decision | None = parse_decision(new_text, ctx.parsed.normalized_subject)
    if decision is None:
        return [phrase("held.no_decision", language, address=decision_address(ctx.settings, ctx.mailing_list,
                                                                              held.token))]
    result = decide_held(ctx.session, ctx.settings, held, decision.action, actor=ctx.sender, now=ctx.now,
                         reason=decision.reason if decision.action == "reject" else "", via="mail",
                         language=language)
    return [result.message]


def expire_held(settings: Settings, factory: sessionmaker[Session], *, now: datetime) -> int:
    """Mark held messages past their expiry as expired and tell their authors; returns how many.

    Idempotent (a scheduled job): each row is expired once, in batches, each batch one transaction.
    """
    total = 0
    while True:
        with session_scope(factory) as session:
            rows = list(session.scalars(
                select(HeldMessage)
                .where(HeldMessage.decision.is_(None), HeldMessage.expires_at <= now)
                .order_by(HeldMessage.id)
                .limit(EXPIRE_BATCH)
            ))
            for held in rows:
                _expire_one(session, settings, held, now)
            count = len(rows)
        total += count
        if count < EXPIRE_BATCH:
            break
    if total:
        log.info("%d held message(s) expired", total)
    return total


def _expire_one(session: Session, settings: Settings, held: HeldMessage, now: datetime) -> None:
    ml = session.get(MailingList, held.list_id)
    held.decision = "expired"
    held.decided_at = now
    inbound = session.get(InboundMessage, held.inbound_id)
    if inbound is not None and inbound.status == "held":
        inbound.status = "dropped"
        inbound.reason = f"held for moderation and expired unreviewed after {settings.moderation.hold_expiry_days} days"
    if ml is None:
        return
    session.add(ModerationAction(list_id=ml.id, topic_id=None, actor_id=None, action="expire",
                                 detail=f"held #{held.id} from {held.sender}: {held.subject}", via="scheduler",
                                 created_at=now))
    if held.sender:
        fields = {"list": ml.name, "list_title": ml.title or ml.name, "subject": held.subject or "-",
                  "days": settings.moderation.hold_expiry_days, "sender": held.sender}
        subject, body = render("held_expired", _language(session, held.sender, ml, settings), **fields)
        queue_notice(session, settings, ml, to=held.sender, subject=subject, body=body, now=now, kind="notice",
                     dedupe_key=f"held:{held.id}:expired")
    session.flush()


def pending_held(session: Session, mailing_list: MailingList) -> list[HeldMessage]:
    """Undecided held messages of a list, oldest first (the web moderation page)."""
    return list(session.scalars(
        select(HeldMessage)
        .where(HeldMessage.list_id == mailing_list.id, HeldMessage.decision.is_(None))
        .order_by(HeldMessage.created_at, HeldMessage.id)
    ))


__all__ = [
    "APPROVED_PREFIX",
    "DecisionResult",
    "decide_held",
    "decision_address",
    "expire_held",
    "handle_decision_mail",
    "held_by_token",
    "hold_message",
    "is_approved",
    "moderators",
    "notice_message_id",
    "pending_held",
]
