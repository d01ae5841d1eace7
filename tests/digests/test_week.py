"""A week of daily and weekly digests with a fake clock, for subscribers in three time zones.

Mail arrives as the clock advances; the digest job runs every 30 minutes, and once more at once whenever it
did something (a double run must do nothing); the scheduler is down for 36 hours in the middle (catch-up).
At the end every subscriber has exactly one DigestRun per due period, an outbox row for each non-empty one
and none for the empty ones, and the digests that go out through the real SMTP sink have the right content.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from email import message_from_bytes, policy
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digests.jobs import send_due_digests
from gateway.delivery import deliver_pending
from passerelle.config import Settings
from passerelle.models import DigestRun, Message, OutboxMessage, Subscription, TopicFollow
from tests.digests.builders import add_message, close_topic, escalate_topic, make_topic
from tests.factories import make_category, make_list, make_member
from tests.smtp_sink import SmtpSink

START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)  # a Sunday
END = datetime(2026, 11, 9, 14, 0, tzinfo=UTC)  # Monday, after the Montreal weekly (07:00 = 12:00Z)
DOWN = (datetime(2026, 11, 7, 0, 0, tzinfo=UTC), datetime(2026, 11, 8, 12, 0, tzinfo=UTC))
STEP = timedelta(minutes=30)

SUBSCRIBERS = {
    # address: (time zone, language, mode)
    "paris.daily@example.fr": ("Europe/Paris", "fr", "daily"),
    "paris.weekly@example.de": ("Europe/Paris", "de", "weekly"),
    "tokyo.daily@example.jp": ("Asia/Tokyo", "it", "daily"),
    "montreal.daily@example.ca": ("America/Montreal", "es", "daily"),
    "montreal.weekly@example.ca": ("America/Montreal", "en", "weekly"),
}


def _events(f: dict) -> list[tuple[datetime, str]]:
    """What happens during the week, in order: (when, what)."""
    return [
        (datetime(2026, 11, 2, 9, 0, tzinfo=UTC), "new:transport"),
        (datetime(2026, 11, 2, 15, 0, tzinfo=UTC), "reply:transport"),
        (datetime(2026, 11, 3, 8, 0, tzinfo=UTC), "new:sante"),
        (datetime(2026, 11, 3, 8, 30, tzinfo=UTC), "new:muted"),
        (datetime(2026, 11, 3, 20, 0, tzinfo=UTC), "close:transport"),
        # Nothing from 2026-11-04 00:00Z to 2026-11-06 10:00Z: empty digests.
        (datetime(2026, 11, 6, 10, 0, tzinfo=UTC), "reply:sante"),
        (datetime(2026, 11, 7, 10, 0, tzinfo=UTC), "new:fiscal"),  # while the scheduler is down
        (datetime(2026, 11, 8, 23, 0, tzinfo=UTC), "escalate:fiscal"),
    ]


@pytest.fixture
def week(db: Session, settings: Settings) -> dict:
    ml = make_list(db, now=START)
    f: dict = {"list": ml, "transport": make_category(db, ml, "Transport", now=START),
               "sante": make_category(db, ml, "Santé", now=START)}
    f["author"], _ = make_member(db, "camille@example.org", name="Camille", mailing_list=ml, now=START)
    f["expert"], _ = make_member(db, "hans@example.de", name="Hans", mailing_list=ml, now=START)
    f["subs"] = {}
    for email, (zone, language, mode) in SUBSCRIBERS.items():
        _, sub = make_member(db, email, mailing_list=ml, mode=mode, timezone=zone, language=language, now=START)
        f["subs"][email] = sub
    # Never a digest for these: not in a digest mode, or not receiving mail at all.
    for email, mode, status in [
        ("instant@example.org", "instant", "active"), ("nomail@example.org", "nomail", "active"),
        ("gone@example.org", "daily", "unsubscribed"), ("bouncing@example.org", "daily", "disabled"),
        ("pending@example.org", "weekly", "pending"),
    ]:
        make_member(db, email, mailing_list=ml, mode=mode, status=status, now=START)
    db.commit()
    return f


def _apply(db: Session, f: dict, what: str, at: datetime) -> None:
    action, _, name = what.partition(":")
    topics = f.setdefault("topics", {})
    if action == "new":
        category = f.get(name)
        topic, _ = make_topic(db, f["list"], f"Sujet {name}", at=at, author=f["author"], category=category,
                              text=f"Premier message sur {name}.")
        topics[name] = topic
        if name == "muted":
            member = f["subs"]["paris.daily@example.fr"].member
            db.add(TopicFollow(member_id=member.id, topic_id=topic.id, mode="mute", created_at=at))
    elif action == "reply":
        add_message(db, topics[name], f"Réponse sur {name}.\n\n> Premier message sur {name}.", at=at,
                    author=f["expert"], new_text=f"Réponse sur {name}.")
    elif action == "close":
        close_topic(db, topics[name], at=at)
    elif action == "escalate":
        escalate_topic(db, topics[name], at=at)
    db.commit()


def _expected(db: Session, f: dict, settings: Settings, email: str) -> dict[str, str]:
    """{period key: "sent"/"empty"} computed independently from the archive, for one subscriber."""
    zone_name, _, mode = SUBSCRIBERS[email]
    zone = ZoneInfo(zone_name)
    muted = {f["topics"]["muted"].id} if email == "paris.daily@example.fr" else set()
    received = [(m.received_at, m.topic_id) for m in db.scalars(select(Message))]
    closed = [(t.closed_at, t.id) for t in f["topics"].values() if t.closed_at]
    escalated = [(datetime(2026, 11, 8, 23, 0, tzinfo=UTC), f["topics"]["fiscal"].id)]
    out = {}
    day = date(2026, 10, 31)
    while day <= date(2026, 11, 10):
        day += timedelta(days=1)
        if mode == "weekly" and day.weekday() != 0:
            continue
        until = datetime.combine(day, time(7), tzinfo=zone).astimezone(UTC)
        start_day = day - timedelta(days=1 if mode == "daily" else 7)
        since = datetime.combine(start_day, time(7), tzinfo=zone).astimezone(UTC)
        if until <= START or until > END:
            continue
        active = any(since <= at < until and tid not in muted for at, tid in received + closed + escalated)
        key = day.isoformat() if mode == "daily" else f"{day.isocalendar()[0]}-W{day.isocalendar()[1]:02d}"
        out[key] = "sent" if active else "empty"
    return out


def test_a_week_of_digests(db: Session, week: dict, settings: Settings,
                           session_factory: sessionmaker[Session], smtp_sink: SmtpSink) -> None:
    events = _events(week)
    now = START
    ticks = 0
    while now <= END:
        while events and events[0][0] <= now:
            at, what = events.pop(0)
            _apply(db, week, what, at)
        if not DOWN[0] <= now < DOWN[1]:
            first = send_due_digests(settings, session_factory, now=now)
            assert first.failed == 0 and first.waiting == 0
            if first.sent or first.empty:
                again = send_due_digests(settings, session_factory, now=now)
                assert again.sent == again.empty == again.failed == 0, "a double run did something"
            ticks += 1
        now += STEP
    assert ticks > 300

    runs = db.scalars(select(DigestRun).order_by(DigestRun.subscription_id, DigestRun.until)).all()
    digests = db.scalars(select(OutboxMessage).where(OutboxMessage.kind == "digest")).all()
    for email, sub in week["subs"].items():
        mine = [r for r in runs if r.subscription_id == sub.id]
        got = {r.period_key: r.outcome for r in mine}
        assert len(got) == len(mine), f"{email}: a period done twice"
        assert got == _expected(db, week, settings, email), email
        # Consecutive periods tile time: no message can be in two digests or in none.
        for before, after in itertools.pairwise(mine):
            assert before.until == after.since, email
        sent_keys = {r.period_key for r in mine if r.outcome == "sent"}
        rows = [o for o in digests if o.recipient == email]
        expected_keys = sorted(f"digest:{sub.id}:{sub.delivery_mode}:{k}" for k in sent_keys)
        assert sorted(o.dedupe_key for o in rows) == expected_keys
    assert {r.subscription_id for r in runs} == {s.id for s in week["subs"].values()}

    # Figures that pin the scenario down (and would catch an off-by-one-day in any time zone).
    by_email = {
        e: {r.period_key: r.outcome for r in runs if r.subscription_id == s.id} for e, s in week["subs"].items()
    }
    assert by_email["paris.daily@example.fr"] == {
        "2026-11-02": "empty", "2026-11-03": "sent", "2026-11-04": "sent", "2026-11-05": "empty",
        "2026-11-06": "empty", "2026-11-07": "sent", "2026-11-08": "sent", "2026-11-09": "sent",
    }
    assert by_email["paris.weekly@example.de"] == {"2026-W45": "empty", "2026-W46": "sent"}
    # Monday 07:00 in Montreal is 12:00Z: the transport topic of 09:00Z is already in the first weekly.
    assert by_email["montreal.weekly@example.ca"] == {"2026-W45": "sent", "2026-W46": "sent"}
    # 07:00 in Tokyo is 22:00Z the day before: the topic of 11-07 10:00Z is in the digest of the 8th, the
    # escalation of 11-08 23:00Z misses the 9th's and the 10th's is not due yet at the end (11-09 14:00Z).
    tokyo = by_email["tokyo.daily@example.jp"]
    assert (tokyo["2026-11-08"], tokyo["2026-11-09"], "2026-11-10" in tokyo) == ("sent", "empty", False)

    # Every queued digest goes out once through the real relay, with VERP and the list headers.
    db.commit()  # end the reading transaction (SQLite: it holds the write lock)
    stats = deliver_pending(settings, session_factory, now=END)
    assert stats.failed == 0 and stats.sent == len(digests)
    received = smtp_sink.received
    assert len(received) == len(digests)
    paris = [r for r in received if r.rcpt_tos == ["paris.daily@example.fr"]]
    assert all(r.mail_from == "forum-bounces+paris.daily=example.fr@forum.test" for r in paris)
    mails = {message_from_bytes(r.data, policy=policy.default)["Message-ID"]: r for r in paris}
    assert len(mails) == len(paris)

    nov3 = next(message_from_bytes(r.data, policy=policy.default) for r in paris
                if b"digest.daily.2026-11-03." in r.data)
    assert nov3["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/u/" in nov3["List-Unsubscribe"] and "mailto:forum-request@forum.test" in nov3["List-Unsubscribe"]
    text = nov3.get_body(("plain",)).get_content()
    # Window [11-02 06:00Z, 11-03 06:00Z): the transport topic, new (no sheet says what kind), with its first
    # message and the reply.
    assert "## Transport" in text and "### Nouveaux sujets" in text
    assert "Premier message sur transport." in text and "Réponse sur transport." in text
    assert "Santé" not in text

    nov4 = next(message_from_bytes(r.data, policy=policy.default) for r in paris
                if b"digest.daily.2026-11-04." in r.data)
    text = nov4.get_body(("plain",)).get_content()
    # [11-03 06:00Z, 11-04 06:00Z): the new Santé topic, the transport topic closed; the muted one absent.
    assert "### Nouveaux sujets" in text and "Sujet sante" in text and "### Sujets clos" in text
    assert "Sujet muted" not in text

    weekly = next(message_from_bytes(r.data, policy=policy.default) for r in received
                  if r.rcpt_tos == ["paris.weekly@example.de"])
    text = weekly.get_body(("plain",)).get_content()
    # (Stripped: the stdlib folds a long Subject onto a continuation line; mail clients drop that space.)
    assert weekly["Subject"].strip() == "[Forum] Wochenzusammenfassung bis 9. November 2026: 4 Themen, 6 Nachrichten"
    # [11-02 06:00Z, 11-09 06:00Z) in German: everything of the week, the muted topic included (not muted by
    # this member); the escalation of 11-08 23:00Z is in it too.
    for heading in ("## Transport", "## Santé", "## Ohne Kategorie", "### Neue Themen",
                    "### Geschlossene Themen", "### Weitergeleitete Hindernisse"):
        assert heading in text, heading
    assert "Sujet muted" in text


def test_changing_mode_or_status_stops_digests(db: Session, week: dict, settings: Settings,
                                                session_factory: sessionmaker[Session]) -> None:
    _apply(db, week, "new:transport", datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    sub = db.get(Subscription, week["subs"]["paris.daily@example.fr"].id)
    sub.delivery_mode = "nomail"
    other = db.get(Subscription, week["subs"]["tokyo.daily@example.jp"].id)
    other.status = "unsubscribed"
    db.commit()
    result = send_due_digests(settings, session_factory, now=datetime(2026, 11, 3, 12, 0, tzinfo=UTC))
    done = {r.subscription_id for r in db.scalars(select(DigestRun))}
    assert sub.id not in done and other.id not in done
    assert result.sent == 1  # montreal.daily (07:00 in Montreal = 12:00Z): the transport topic


def test_garbage_clock_is_refused(settings: Settings, session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        send_due_digests(settings, session_factory, now=datetime(2026, 11, 3, 12, 0))
    bad = settings.with_overrides({"digests": {"weekly_day": "someday"}})
    with pytest.raises(ValueError, match="weekly_day"):
        send_due_digests(bad, session_factory, now=datetime(2026, 11, 3, 12, 0, tzinfo=UTC))


def test_switching_modes_loses_nothing_and_repeats_nothing(db: Session, week: dict, settings: Settings,
                                                           session_factory: sessionmaker[Session]) -> None:
    """daily -> weekly -> daily, then disabled by bounces and re-enabled: one digest after each change,
    covering everything since the previous digest, whatever its kind."""
    sub_id = week["subs"]["paris.daily@example.fr"].id

    def run(at: datetime) -> None:
        assert send_due_digests(settings, session_factory, now=at).failed == 0

    def change(at: datetime, **values: object) -> None:
        sub = db.get(Subscription, sub_id)
        for name, value in values.items():
            setattr(sub, name, value)
        sub.updated_at = at
        db.commit()

    _apply(db, week, "new:transport", datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    run(datetime(2026, 11, 3, 6, 30, tzinfo=UTC))  # daily of 11-03
    change(datetime(2026, 11, 3, 10, 0, tzinfo=UTC), delivery_mode="weekly")
    _apply(db, week, "new:sante", datetime(2026, 11, 4, 9, 0, tzinfo=UTC))
    run(datetime(2026, 11, 5, 6, 30, tzinfo=UTC))  # nothing: weekly, not due
    run(datetime(2026, 11, 9, 6, 30, tzinfo=UTC))  # weekly of W46, from the daily's end
    change(datetime(2026, 11, 10, 12, 0, tzinfo=UTC), delivery_mode="daily")
    _apply(db, week, "reply:sante", datetime(2026, 11, 10, 15, 0, tzinfo=UTC))
    run(datetime(2026, 11, 11, 6, 30, tzinfo=UTC))  # one daily from the weekly's end, not two
    change(datetime(2026, 11, 11, 9, 0, tzinfo=UTC), status="disabled")
    _apply(db, week, "new:fiscal", datetime(2026, 11, 12, 9, 0, tzinfo=UTC))
    run(datetime(2026, 11, 14, 6, 30, tzinfo=UTC))  # disabled: nothing
    change(datetime(2026, 11, 14, 8, 0, tzinfo=UTC), status="active")
    run(datetime(2026, 11, 15, 6, 30, tzinfo=UTC))  # back: what was missed while disabled, in one digest

    runs = db.scalars(select(DigestRun).where(DigestRun.subscription_id == sub_id).order_by(DigestRun.until)).all()
    assert [(r.period, r.period_key, r.outcome, r.message_count) for r in runs] == [
        ("daily", "2026-11-03", "sent", 1),
        ("weekly", "2026-W46", "sent", 1),
        ("daily", "2026-11-11", "sent", 1),
        ("daily", "2026-11-15", "sent", 1),
    ]
    for before, after in itertools.pairwise(runs):
        assert before.until == after.since
