"""Bounce score: decay, hard vs soft, threshold -> disabled with notices, re-enable, real bounces from the
sisimai corpus sent to our VERP address, auto-replies never scored."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from digests.links import read_action_token
from gateway.bounce_score import (
    ReenableError,
    current_score,
    decay_scores,
    decayed,
    find_subscription,
    record_bounce,
    reenable_delivery,
)
from gateway.bounces.parse import parse_bounce
from passerelle.config import Settings
from passerelle.mail.addresses import verp_decode, verp_encode
from passerelle.models import BounceEvent, OutboxMessage
from tests import corpus_dir
from tests.factories import make_list, make_member

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
BOUNCES = corpus_dir() / "sisimai-bounces" / "maildir" / "bsd"


@pytest.fixture
def forum(db: Session) -> dict:
    ml = make_list(db)
    make_member(db, "moderatrice@example.fr", mailing_list=ml, role="moderator", language="fr")
    make_member(db, "owner@example.org", mailing_list=ml, role="owner", language="en")
    make_member(db, "retired.mod@example.org", mailing_list=ml, role="moderator", status="unsubscribed")
    member, sub = make_member(db, "kijitora@example.co.jp", name="Kiji Tora", mailing_list=ml, language="de")
    db.flush()
    return {"list": ml, "member": member, "sub": sub}


def _outbox(db: Session) -> list[OutboxMessage]:
    return list(db.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def _subject(message: object) -> str:
    """The Subject as a reader sees it: the stdlib's folding leaves stray white space that MUAs drop."""
    return " ".join(str(message["Subject"]).split())  # type: ignore[index]


def test_decay_halves_every_half_life() -> None:
    assert decayed(4.0, T0, T0 + timedelta(days=7), 7) == pytest.approx(2.0)
    assert decayed(4.0, T0, T0 + timedelta(days=21), 7) == pytest.approx(0.5)
    assert decayed(4.0, None, T0, 7) == 4.0
    assert decayed(0.0, T0, T0 + timedelta(days=1), 7) == 0.0
    # A clock that went backwards never increases a score.
    assert decayed(4.0, T0, T0 - timedelta(days=1), 7) == 4.0
    with pytest.raises(ValueError, match="half_life_days"):
        decayed(1.0, T0, T0, 0)


def test_hard_bounces_disable_delivery_with_notices(db: Session, forum: dict, settings: Settings) -> None:
    ml, sub = forum["list"], forum["sub"]
    outcomes = []
    for i in range(6):
        outcomes.append(record_bounce(
            db, settings, mailing_list=ml, address="Kijitora@Example.co.jp", hard=True, status="5.1.1",
            reason="userunknown", diagnostic="550 5.1.1 <kijitora@example.co.jp>: Recipient address rejected",
            now=T0 + timedelta(minutes=10 * i),
        ))
    # Each hard bounce counts; with ten minutes of decay between them five make 4.99: the sixth disables.
    assert [o.counted for o in outcomes] == [True] * 6
    assert [o.disabled for o in outcomes] == [False] * 5 + [True]
    assert outcomes[4].score == pytest.approx(4.99, abs=0.01)
    assert sub.status == "disabled"
    assert sub.disabled_reason.startswith("bounces: score 6.0 >= 5 (last: 5.1.1 userunknown)")

    notices = _outbox(db)
    assert sorted(n.recipient for n in notices) == ["kijitora@example.co.jp", "moderatrice@example.fr",
                                                    "owner@example.org"]
    by_rcpt = {n.recipient: message_from_bytes(n.payload, policy=policy.default) for n in notices}
    member_mail = by_rcpt["kijitora@example.co.jp"]
    assert _subject(member_mail) == "[Forum] Zustellung ausgesetzt: Nachrichten an Sie kommen zurück"
    body = member_mail.get_content()
    assert "Recipient address rejected" in body and "forum-request@forum.test" in body
    url = re.search(r"http://archive\.test/d/reenable/(\S+)", body)
    assert url and read_action_token(settings, "reenable", url.group(1)) == {"s": sub.id}
    assert _subject(by_rcpt["moderatrice@example.fr"]).startswith("[Forum] Distribution suspendue pour kijitora@")
    assert _subject(by_rcpt["owner@example.org"]).startswith("[Forum] Delivery suspended for kijitora@")

    # Further bounces are recorded (score visible to operators) but do not notify again.
    later = record_bounce(db, settings, mailing_list=ml, address="kijitora@example.co.jp", hard=True,
                          now=T0 + timedelta(hours=2))
    assert later.counted and not later.disabled
    assert len(_outbox(db)) == 3
    assert len(db.scalars(select(BounceEvent).where(BounceEvent.subscription_id == sub.id)).all()) == 7


def test_soft_bounces_count_once_per_day(db: Session, forum: dict, settings: Settings) -> None:
    ml, sub = forum["list"], forum["sub"]
    day1 = [record_bounce(db, settings, mailing_list=ml, address=sub.member.email, hard=False, reason="mailboxfull",
                          now=T0 + timedelta(hours=h)) for h in range(10)]
    assert [o.counted for o in day1] == [True] + [False] * 9
    assert current_score(settings, sub, T0 + timedelta(hours=10)) == pytest.approx(0.5 * 0.5 ** (10 / 24 / 7))
    next_day = record_bounce(db, settings, mailing_list=ml, address=sub.member.email, hard=False,
                             reason="mailboxfull", now=T0 + timedelta(days=1))
    assert next_day.counted and next_day.score == pytest.approx(0.5 * 0.5 ** (1 / 7) + 0.5)
    # A month of a full mailbox (one soft bounce a day) reaches the threshold; a week does not.
    for d in range(2, 30):
        outcome = record_bounce(db, settings, mailing_list=ml, address=sub.member.email, hard=False,
                                reason="mailboxfull", now=T0 + timedelta(days=d))
        if d == 7:
            assert sub.status == "active"
        if outcome.disabled:
            break
    assert sub.status == "disabled"


def test_warnings_and_complaints_are_not_scored(db: Session, forum: dict, settings: Settings) -> None:
    ml, sub = forum["list"], forum["sub"]
    delayed = record_bounce(db, settings, mailing_list=ml, address=sub.member.email, hard=False, status="4.4.7",
                            reason="expired", action="delayed", now=T0)
    complaint = record_bounce(db, settings, mailing_list=ml, address=sub.member.email, hard=False,
                              reason="feedback", action="complained", now=T0)
    assert not delayed.counted and not complaint.counted
    assert (delayed.event.reason, complaint.event.reason) == ("delayed", "feedback")
    assert delayed.event.diagnostic.startswith("[expired]")
    assert sub.bounce_score == 0.0
    # A real soft bounce the same day still counts: warnings do not use up the day's count.
    assert record_bounce(db, settings, mailing_list=ml, address=sub.member.email, hard=False, now=T0).counted


def test_unknown_or_garbage_addresses_are_recorded_only(db: Session, forum: dict, settings: Settings) -> None:
    ml = forum["list"]
    for address in ("stranger@example.org", "", "not an address", "<>", "x" * 500):
        outcome = record_bounce(db, settings, mailing_list=ml, address=address, hard=True, now=T0)
        assert not outcome.counted and outcome.event.subscription_id is None
    assert find_subscription(db, ml.id, "garbage") is None
    with pytest.raises(ValueError, match="aware datetime"):
        record_bounce(db, settings, mailing_list=ml, address="kijitora@example.co.jp", hard=True,
                      now=datetime(2026, 11, 2, 9, 0))


def test_reenable(db: Session, forum: dict, settings: Settings) -> None:
    ml, sub = forum["list"], forum["sub"]
    for i in range(6):
        record_bounce(db, settings, mailing_list=ml, address=sub.member.email, hard=True, now=T0 + timedelta(seconds=i))
    assert sub.status == "disabled"
    assert reenable_delivery(db, sub, T0 + timedelta(days=1)) is True
    assert (sub.status, sub.bounce_score, sub.disabled_reason) == ("active", 0.0, "")
    assert reenable_delivery(db, sub, T0 + timedelta(days=1)) is False
    # The score starts again from nothing: one new bounce does not disable again.
    assert not record_bounce(db, settings, mailing_list=ml, address=sub.member.email, hard=True,
                             now=T0 + timedelta(days=2)).disabled
    sub.status = "unsubscribed"
    with pytest.raises(ReenableError, match="subscribe again"):
        reenable_delivery(db, sub, T0 + timedelta(days=3))


def test_decay_job_clears_old_scores(db: Session, forum: dict, settings: Settings) -> None:
    ml, sub = forum["list"], forum["sub"]
    record_bounce(db, settings, mailing_list=ml, address=sub.member.email, hard=True, now=T0)
    assert decay_scores(db, settings, now=T0 + timedelta(days=7)) == 1
    assert sub.bounce_score == pytest.approx(0.5)
    # Rebasing changes nothing to the value read later.
    assert current_score(settings, sub, T0 + timedelta(days=14)) == pytest.approx(0.25)
    assert decay_scores(db, settings, now=T0 + timedelta(days=60)) == 1
    assert sub.bounce_score == 0.0
    assert decay_scores(db, settings, now=T0 + timedelta(days=61)) == 0


def _adapted(name: str, settings: Settings, member: str) -> tuple[bytes, str]:
    """A real bounce as it reaches us: sent to the VERP return path of the copy that bounced (the original
    sender, in the bounce's To header, becomes our VERP address everywhere in the file)."""
    raw = (BOUNCES / name).read_bytes()
    to = str(message_from_bytes(raw, policy=policy.compat32).get("To", ""))
    sender = re.search(r"[\w.+-]+@[\w.-]+", to)
    assert sender, f"{name}: no To address"
    verp = verp_encode("forum-bounces", settings.lists.domain, member)
    return raw.replace(sender.group(0).encode(), verp.encode()), verp


@pytest.mark.parametrize(
    ("name", "member", "hard", "status"),
    [
        ("lhost-postfix-04.eml", "kijitora@example.co.jp", True, "5.1.1"),
        ("lhost-exim-05.eml", "kijitora@neko.example.co.jp", True, "5.1.1"),
        ("lhost-gmail-01.eml", "userunknown@example.jp", True, "5.1.1"),
        ("lhost-office365-01.eml", "kijitora@example.com", True, "5.1.10"),
        ("lhost-exim-07.eml", "shiba@example.com", False, ""),
        ("lhost-postfix-15.eml", "kijitora@bukkoji.example.org", False, "4.4.1"),
    ],
)
def test_real_bounces_to_our_verp_address(db: Session, settings: Settings, name: str, member: str, hard: bool,
                                          status: str) -> None:
    ml = make_list(db)
    _, sub = make_member(db, member, mailing_list=ml)
    raw, verp = _adapted(name, settings, member)
    decoded = verp_decode(verp, list_local="forum-bounces")
    assert decoded == member
    report = parse_bounce(raw, verp_recipient=decoded)
    assert report is not None and report.recipients
    for r in report.recipients:
        outcome = record_bounce(db, settings, mailing_list=ml, address=r.address, hard=r.hard, status=r.status,
                                reason=r.reason, diagnostic=r.diagnostic, action=r.action, now=T0)
        assert outcome.event.subscription_id == sub.id
        assert outcome.counted
        assert outcome.event.hard is hard and outcome.event.status == status
    assert sub.bounce_score == (settings.bounces.hard_score if hard else settings.bounces.soft_score)


@pytest.mark.parametrize("name", [f"rfc3834-0{i}.eml" for i in range(1, 6)])
def test_auto_replies_are_never_bounces(db: Session, settings: Settings, name: str) -> None:
    raw, verp = _adapted(name, settings, "kijitora@example.jp")
    assert parse_bounce(raw, verp_recipient=verp_decode(verp)) is None
    assert db.scalar(select(BounceEvent.id)) is None
