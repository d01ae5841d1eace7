"""passerelle.escalations: escalating, following up, the register's exports, and its scheduled mailing
(idempotent per period, also with two schedulers racing)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digests.scheduler import default_jobs, run_all_once
from gateway.commands import intercept_post
from passerelle import escalations as esc
from passerelle.config import ConfigError, Settings
from passerelle.models import Escalation, EscalationNote, OutboxMessage, Topic
from tests.gateway.command_util import make_ctx, raw_mail
from tests.gateway.dkim_util import sign
from tests.sheets.conftest import MOD, Network

NOW = datetime(2026, 10, 14, 9, 0, tzinfo=UTC)
REPORT_TO = "coordination@gouv.example"


@pytest.fixture
def network(network: Network, db: Session) -> Network:
    """The network, its closed topic an obstacle still to be solved ("study-needed"): a topic closed as
    solved is not escalated (passerelle.escalations.SolvedTopicError, tests/sheets/test_solved_topics.py)."""
    network.topic.outcome = "study-needed"
    db.commit()
    return network


def test_escalate_follow_up_and_topic_level(db: Session, network: Network) -> None:
    topic = network.open_topic
    first, created = esc.escalate(db, topic, "national", note="Écrit à la DGEFP.", actor=network.mod, now=NOW)
    assert created and topic.escalation_level == "national" and first.state == "escalated"
    same, created = esc.escalate(db, topic, "national", note="Relance.", actor=network.mod, now=NOW)
    assert not created and same.id == first.id
    assert [n.text for n in db.scalars(select(EscalationNote))] == ["Relance."]
    eu, _ = esc.escalate(db, topic, "european", actor=network.mod, now=NOW + timedelta(days=1))
    assert topic.escalation_level == "european"  # the highest open level
    assert esc.change_state(db, eu, "withdrawn", actor=network.mod, now=NOW + timedelta(days=2))
    assert topic.escalation_level == "national"
    assert esc.change_state(db, first, "resolved", actor=network.mod, now=NOW + timedelta(days=3),
                            note="Accord trouvé.")
    assert topic.escalation_level is None
    assert not esc.change_state(db, first, "resolved", actor=network.mod, now=NOW + timedelta(days=4))
    for bad in (lambda: esc.escalate(db, topic, "galactic", actor=None, now=NOW),
                lambda: esc.change_state(db, first, "forgotten", actor=None, now=NOW),
                lambda: esc.add_note(db, first, "   ", actor=None, now=NOW),
                lambda: esc.add_note(db, first, "x" * (esc.NOTE_MAX + 1), actor=None, now=NOW),
                lambda: esc.add_note(db, first, "nul\x00", actor=None, now=NOW)):
        with pytest.raises(esc.EscalationError):
            bad()


def test_escalate_by_mail_enters_the_register(db: Session, settings: Settings, network: Network) -> None:
    raw = raw_mail(sender=MOD, subject="Re: Apprentissage", body="#escalate national Saisine du ministère\n",
                   message_id="esc1@mot.example", in_reply_to=f"t{network.topic.id}.2@test.example")
    ctx = make_ctx(db, settings, sign(raw, domain="mot.example"), mailing_list=network.ml, now=NOW,
                   resolver=network.resolver)
    intercept_post(ctx, network.topic)
    entries = esc.register(db)
    assert len(entries) == 1 and entries[0].topic.id == network.topic.id
    assert entries[0].escalation.note == "Saisine du ministère" and entries[0].escalated_by.id == network.mod.id


def test_register_exports_parse_back(db: Session, network: Network) -> None:
    e, _ = esc.escalate(db, network.topic, "european", note="=cmd|' /C calc'!A0", actor=network.mod, now=NOW)
    esc.add_note(db, e, "Réponse de la Commission attendue.\nDeuxième ligne.", actor=network.mod,
                 now=NOW + timedelta(days=1))
    entries = esc.register(db)
    full = [esc.entry_record(x, full=True, base_url="http://archive.test") for x in entries]
    limited = [esc.entry_record(x, full=False, base_url="http://archive.test") for x in entries]
    assert full[0]["notes"][0]["text"].startswith("Réponse de la Commission")
    assert full[0]["url"] == f"http://archive.test/t/{network.topic.id}"
    assert "notes" not in limited[0] and "note" not in limited[0] and limited[0]["title"] == network.topic.subject
    data = json.loads(esc.register_json(full, generated_at=NOW))
    assert data["count"] == 1 and data["escalations"][0]["level"] == "european"
    rows = list(csv.DictReader(io.StringIO(esc.register_csv(full))))
    assert rows[0]["state"] == "escalated" and rows[0]["topic_id"] == str(network.topic.id)
    assert rows[0]["note"] == "'=cmd|' /C calc'!A0"  # not a formula for spreadsheets
    assert "Réponse de la Commission attendue.\nDeuxième ligne." in rows[0]["notes"]
    rows = list(csv.DictReader(io.StringIO(esc.register_csv(limited))))
    assert rows[0]["notes"] == "" and rows[0]["note"] == ""


@pytest.mark.parametrize(("every", "now", "key", "since", "until"), [
    ("monthly", datetime(2026, 11, 23, 12, tzinfo=UTC), "2026-10",
     datetime(2026, 9, 30, 22, tzinfo=UTC), datetime(2026, 10, 31, 23, tzinfo=UTC)),
    ("monthly", datetime(2027, 1, 1, 0, 30, tzinfo=UTC), "2026-12",
     datetime(2026, 11, 30, 23, tzinfo=UTC), datetime(2026, 12, 31, 23, tzinfo=UTC)),
    ("weekly", datetime(2026, 11, 23, 12, tzinfo=UTC), "2026-W47",
     datetime(2026, 11, 15, 23, tzinfo=UTC), datetime(2026, 11, 22, 23, tzinfo=UTC)),
])
def test_report_periods_in_the_site_time_zone(every: str, now: datetime, key: str, since: datetime,
                                              until: datetime) -> None:
    period = esc.report_period(every, now, "Europe/Paris")
    assert (period.key, period.since, period.until) == (key, since, until)


def test_bad_report_settings(settings: Settings, session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(esc.EscalationError, match="weekly, monthly"):
        esc.report_period("fortnightly", NOW, "UTC")
    # A bad address in escalation.report_to stops the configuration from loading (tests/test_config.py).
    with pytest.raises(ConfigError, match=r"escalation\.report_to.*'not an address'"):
        settings.with_overrides({"escalation": {"report_to": "not an address, ok@gouv.example"}})
    several = settings.with_overrides({"escalation": {"report_to": " Ok@Gouv.example,second@region.example "}})
    assert esc.report_recipients(several) == ["ok@gouv.example", "second@region.example"]
    assert esc.send_register_reports(settings, session_factory, now=NOW).disabled


@dataclass(frozen=True)
class Report:
    recipient: str
    dedupe_key: str
    payload: bytes


def _reports(db: Session) -> list[Report]:
    """The reports queued so far; the test's session lets go of the database afterwards (SQLite: a reader
    holding a transaction would keep the job's writer waiting)."""
    db.rollback()
    rows = db.scalars(select(OutboxMessage).where(OutboxMessage.kind == "report").order_by(OutboxMessage.id))
    out = [Report(r.recipient, r.dedupe_key, r.payload or b"") for r in rows]
    db.rollback()
    return out


def test_scheduled_mailing_is_sent_once_per_period(db: Session, settings: Settings, network: Network,
                                                   session_factory: sessionmaker[Session]) -> None:
    configured = settings.with_overrides({"escalation": {"report_to": REPORT_TO, "report_every": "monthly"}})
    # Nothing escalated yet: no mail, and nothing recorded that would stop a later report.
    result = esc.send_register_reports(configured, session_factory, now=NOW)
    assert result.period == "2026-09" and result.skipped == 1 and _reports(db) == []

    e, _ = esc.escalate(db, network.topic, "national", note="Saisine de la DGEFP.", actor=network.mod,
                        now=datetime(2026, 10, 2, tzinfo=UTC))
    esc.add_note(db, e, "Accusé de réception.", actor=network.mod, now=datetime(2026, 10, 20, tzinfo=UTC))
    db.commit()
    later = datetime(2026, 11, 3, 7, 0, tzinfo=UTC)
    result = esc.send_register_reports(configured, session_factory, now=later)
    assert (result.period, result.sent) == ("2026-10", 1)
    # Again, and through the scheduler's job list: nothing more for that period.
    assert esc.send_register_reports(configured, session_factory, now=later + timedelta(hours=1)).already == 1
    jobs = {job.id: job for job in default_jobs(configured)}
    assert jobs["escalation-register"].func is esc.send_register_reports
    run_all_once(configured, session_factory, now=later + timedelta(hours=2))
    rows = _reports(db)
    assert len(rows) == 1 and rows[0].recipient == REPORT_TO
    assert rows[0].dedupe_key == f"escalation-report:{network.ml.id}:2026-10"

    mail = message_from_bytes(rows[0].payload, policy=policy.default)
    assert "Registre des obstacles transmis" in mail["Subject"] and "2026-10" in mail["Subject"]
    text = mail.get_body(("plain",)).get_content()
    assert "Apprentissage transfrontalier" in text and "Saisine de la DGEFP." in text
    assert "Accusé de réception." in text and f"http://archive.test/t/{network.topic.id}" in text
    attachment = next(mail.iter_attachments())
    assert attachment.get_filename() == "escalations-forum-2026-10.csv"
    rows_csv = list(csv.DictReader(io.StringIO(attachment.get_content())))
    assert [r["topic_id"] for r in rows_csv] == [str(network.topic.id)]

    # The next month: a new report (the escalation is still open).
    db.rollback()
    result = esc.send_register_reports(configured, session_factory, now=datetime(2026, 12, 1, 9, tzinfo=UTC))
    assert (result.period, result.sent) == ("2026-11", 1)
    assert len(_reports(db)) == 2


def test_two_schedulers_racing_queue_one_report(db: Session, settings: Settings, network: Network,
                                                session_factory: sessionmaker[Session]) -> None:
    configured = settings.with_overrides({"escalation": {"report_to": REPORT_TO}})
    esc.escalate(db, network.topic, "european", actor=network.mod, now=datetime(2026, 10, 2, tzinfo=UTC))
    db.commit()
    period = esc.report_period("monthly", datetime(2026, 11, 3, tzinfo=UTC), "Europe/Paris")
    # Another process queued it between our check and our commit: the unique key refuses ours.
    from gateway.notices import queue_message

    with session_factory() as other:
        queue_message(other, kind="report", dedupe_key=esc.report_dedupe_key(network.ml.id, period),
                      recipient=REPORT_TO, payload=b"x", now=NOW, list_id=network.ml.id)
        other.commit()
    result = esc.send_register_reports(configured, session_factory, now=datetime(2026, 11, 3, tzinfo=UTC))
    assert result.sent == 0 and result.already == 1
    assert len(_reports(db)) == 1


def test_topic_of_an_escalation_is_kept(db: Session, network: Network) -> None:
    esc.escalate(db, network.topic, "national", actor=None, now=NOW)
    db.flush()
    topic = db.get(Topic, network.topic.id)
    assert topic is not None and db.scalar(select(Escalation.topic_id)) == topic.id
