"""gateway.moderation: holding posts, deciding by mail in five languages, the worker round trip, expiry."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway import command_parse as cp
from gateway.commands import handle_request_mail
from gateway.inbound import spool_message
from gateway.moderation import decide_held, expire_held, held_by_token, hold_message, is_approved
from gateway.worker import process_pending
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.models import HeldMessage, InboundMessage, Message, ModerationAction, OutboxMessage
from tests.factories import T0, make_list, make_member
from tests.gateway.command_util import body_of, make_ctx, outbox, raw_mail, subject_of

LANGS = ("fr", "en", "de", "it", "es")
MOD_FR = "moderation@eurometropole.example"
MOD_DE = "moderation@landkreis.example"
READER = "reader@regione.example"
STRANGER = "ana.garcia@diputacion.example"


@pytest.fixture
def f(db: Session, settings: Settings) -> SimpleNamespace:
    ml = make_list(db, title="Forum transfrontalier")
    mod_fr, _ = make_member(db, MOD_FR, name="Modération FR", mailing_list=ml, role="moderator", language="fr")
    mod_de, _ = make_member(db, MOD_DE, name="Moderation DE", mailing_list=ml, role="owner", language="de")
    make_member(db, READER, mailing_list=ml, language="it")
    db.commit()
    return SimpleNamespace(ml=ml, mod_fr=mod_fr, mod_de=mod_de, n=0)


def held_post(db: Session, settings: Settings, f: SimpleNamespace, *, sender: str = STRANGER,
              body: str = "Bonjour,\nje travaille en Espagne et je vis en France.\n") -> HeldMessage:
    f.n += 1
    raw = raw_mail(sender=sender, subject="Frontalière : quelle caisse ?", body=body, message_id=f"h{f.n}@dip.example")
    ctx = make_ctx(db, settings, raw, mailing_list=f.ml)
    return hold_message(ctx, f"{sender} is not a member of forum")


def answer(db: Session, settings: Settings, f: SimpleNamespace, held: HeldMessage, body: str, *,
           sender: str = MOD_FR, via_request: bool = False) -> str:
    f.n += 1
    if via_request:
        raw = raw_mail(sender=sender, to="forum-request@forum.test", subject="Re: Held", body=body,
                       message_id=f"a{f.n}@x", in_reply_to=f"mod-{held.token}@forum.test")
        local = "forum-request"
    else:
        raw = raw_mail(sender=sender, to=f"forum+mod-{held.token}@forum.test", subject="Re: Held", body=body,
                       message_id=f"a{f.n}@x")
        local = f"forum+mod-{held.token}"
    return handle_request_mail(make_ctx(db, settings, raw, mailing_list=f.ml, local=local))


def test_hold_notifies_every_moderator_in_their_language_and_the_author(db: Session, settings: Settings,
                                                                        f: SimpleNamespace) -> None:
    held = held_post(db, settings, f)
    inbound = db.get(InboundMessage, held.inbound_id)
    assert inbound is not None and inbound.status == "held"
    assert held.expires_at == T0 + timedelta(days=settings.moderation.hold_expiry_days)
    assert len(held.token) == 24
    fr, de = outbox(db, MOD_FR)[0], outbox(db, MOD_DE)[0]
    assert subject_of(fr).startswith("[forum] Message retenu pour modération")
    assert subject_of(de).startswith("[forum] Zur Moderation zurückgehalten")
    for notice in (fr, de):
        assert notice["Reply-To"] == f"forum+mod-{held.token}@forum.test"
        assert notice["Message-ID"] == f"<mod-{held.token}@forum.test>"
        assert "| je travaille en Espagne" in body_of(notice)
        assert f"http://archive.test/moderation/held/{held.id}" in body_of(notice)
    author = outbox(db, STRANGER)
    assert len(author) == 1 and "attend une modération" in subject_of(author[0])
    assert outbox(db, READER) == []
    # Holding the same spool row again (a rerun) changes nothing.
    ctx_again = make_ctx(db, settings, b"From: <x@y.z>\r\n\r\nx", mailing_list=f.ml)
    ctx_again.inbound = inbound
    assert hold_message(ctx_again, "again").id == held.id
    assert len(list(db.scalars(select(OutboxMessage)))) == 3


DECISION_LINES = {
    "approve": {"fr": "approuver", "en": "approve", "de": "freigeben", "it": "approva", "es": "aprobar"},
    "reject": {"fr": "rejeter hors sujet", "en": "reject off topic", "de": "ablehnen kein Thema",
               "it": "rifiuta fuori tema", "es": "rechazar fuera de tema"},
    "discard": {"fr": "supprimer", "en": "discard", "de": "verwerfen", "it": "scarta", "es": "descartar"},
}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("action", ["approve", "reject", "discard"])
def test_decide_by_mail_in_each_language(db: Session, settings: Settings, f: SimpleNamespace, action: str,
                                         lang: str) -> None:
    f.mod_fr.language = lang
    db.flush()
    held = held_post(db, settings, f)
    quoted = "\n\nLe 2 nov. 2026, Forum a écrit :\n> approve\n> reject\n"
    answer(db, settings, f, held, DECISION_LINES[action][lang] + quoted)
    db.refresh(held)
    inbound = db.get(InboundMessage, held.inbound_id)
    assert held.decision == {"approve": "approved", "reject": "rejected", "discard": "discarded"}[action]
    assert held.decided_by_id == f.mod_fr.id and held.decided_at == T0
    reply = body_of(outbox(db, MOD_FR)[-1])
    assert cp.phrase(f"held.{held.decision}", lang, id=held.id, subject=held.subject, sender=STRANGER,
                     reason=held.decision_reason or "-") in reply
    author_mails = outbox(db, STRANGER)
    if action == "approve":
        assert inbound.status == "new" and is_approved(db, inbound)
        assert len(author_mails) == 1
    elif action == "reject":
        assert inbound.status == "dropped" and not is_approved(db, inbound)
        reason = DECISION_LINES["reject"][lang].split(" ", 1)[1]
        assert held.decision_reason == reason
        assert reason in body_of(author_mails[-1])
    else:
        assert inbound.status == "dropped"
        assert len(author_mails) == 1, "a discarded message's author is not told"
    action_row = db.scalar(select(ModerationAction))
    assert action_row is not None and action_row.action == action and action_row.via == "mail"


def test_decide_by_reply_to_the_request_address(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    held = held_post(db, settings, f)
    answer(db, settings, f, held, "OK", via_request=True)
    db.refresh(held)
    assert held.decision == "approved"


def test_only_moderators_decide(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    held = held_post(db, settings, f)
    answer(db, settings, f, held, "approve", sender=READER)
    answer(db, settings, f, held, "approve", sender=STRANGER)
    db.refresh(held)
    assert held.decision is None
    assert "Solo i moderatori" in body_of(outbox(db, READER)[-1])


def test_no_decision_and_already_decided(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    held = held_post(db, settings, f)
    answer(db, settings, f, held, "Je ne sais pas trop.\n")
    assert "Aucune décision trouvée" in body_of(outbox(db, MOD_FR)[-1])
    answer(db, settings, f, held, "discard")
    answer(db, settings, f, held, "ablehnen", sender=MOD_DE)
    db.refresh(held)
    assert held.decision == "discarded"
    assert "bereits bearbeitet: verworfen durch Modération FR" in body_of(outbox(db, MOD_DE)[-1])


def test_unknown_token(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    raw = raw_mail(sender=MOD_FR, to="forum+mod-0123456789abcdef01234567@forum.test", body="approve")
    handle_request_mail(make_ctx(db, settings, raw, mailing_list=f.ml, local="forum+mod-0123456789abcdef01234567"))
    assert "Aucun message retenu" in body_of(outbox(db, MOD_FR)[-1])
    assert held_by_token(db, "") is None


def test_decide_held_on_the_web_and_bad_actions(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    held = held_post(db, settings, f)
    with pytest.raises(ValueError, match="unknown moderation decision"):
        decide_held(db, settings, held, "publish", actor=f.mod_fr, now=T0)
    result = decide_held(db, settings, held, "reject", actor=f.mod_de, now=T0, reason="Bitte auf Deutsch",
                         via="web", language="de")
    assert result.changed and "abgelehnt" in result.message
    again = decide_held(db, settings, held, "approve", actor=f.mod_fr, now=T0, via="web")
    assert not again.changed and held.decision == "rejected"
    assert db.scalar(select(ModerationAction.via)) == "web"


def test_expiry(db: Session, settings: Settings, f: SimpleNamespace, session_factory: sessionmaker[Session]) -> None:
    held = held_post(db, settings, f)
    other = held_post(db, settings, f, sender="late@example.org")
    other.expires_at = T0 + timedelta(days=30)
    db.commit()
    assert expire_held(settings, session_factory, now=T0 + timedelta(days=1)) == 0
    later = T0 + timedelta(days=settings.moderation.hold_expiry_days, seconds=1)
    assert expire_held(settings, session_factory, now=later) == 1
    assert expire_held(settings, session_factory, now=later) == 0
    db.expire_all()
    assert db.get(HeldMessage, held.id).decision == "expired"  # type: ignore[union-attr]
    assert db.get(HeldMessage, other.id).decision is None  # type: ignore[union-attr]
    inbound = db.get(InboundMessage, held.inbound_id)
    assert inbound.status == "dropped" and inbound.raw, "nothing held is lost: the raw bytes stay"
    assert "a expiré sans être examiné" in subject_of(outbox(db, STRANGER)[-1])
    # A moderator may still approve an expired message.
    result = decide_held(db, settings, db.get(HeldMessage, held.id), "approve", actor=f.mod_fr, now=later)
    assert result.changed and db.get(InboundMessage, held.inbound_id).status == "new"


# ============================================================================ the worker round trip


def _spool(factory: sessionmaker[Session], raw: bytes, to: str) -> int:
    return spool_message(factory, raw, source="smtp", envelope_from="", envelope_to=[to], list_name="forum", now=T0)


def _status(factory: sessionmaker[Session], row_id: int) -> tuple[str, str]:
    with session_scope(factory) as session:
        row = session.get(InboundMessage, row_id)
        assert row is not None
        return row.status, row.reason


def test_approve_round_trip_through_the_worker(settings: Settings, session_factory: sessionmaker[Session],
                                               f: SimpleNamespace) -> None:
    post_id = _spool(session_factory, raw_mail(sender=STRANGER, subject="Frontalière : quelle caisse ?",
                                               body="Bonjour,\nquelle caisse ?\n", message_id="s1@dip.example"),
                     "forum@forum.test")
    process_pending(settings, session_factory, now=T0)
    assert _status(session_factory, post_id)[0] == "held"
    with session_scope(session_factory) as session:
        held = session.scalar(select(HeldMessage))
        assert held is not None
        token = held.token
    reply_id = _spool(session_factory, raw_mail(sender=MOD_FR, to=f"forum+mod-{token}@forum.test", subject="Re: x",
                                                body="approuver\n", message_id="d1@x"),
                      f"forum+mod-{token}@forum.test")
    process_pending(settings, session_factory, now=T0 + timedelta(minutes=5))
    assert _status(session_factory, reply_id)[0] == "command"
    # The approval put the held row back in the queue; the next pass posts it.
    process_pending(settings, session_factory, now=T0 + timedelta(minutes=6))
    status, reason = _status(session_factory, post_id)
    assert status == "done", reason
    with session_scope(session_factory) as session:
        message = session.scalar(select(Message).where(Message.message_id == "s1@dip.example"))
        assert message is not None
        recipients = set(session.scalars(select(OutboxMessage.recipient).where(OutboxMessage.message_pk
                                                                                == message.id)))
        assert READER in recipients


def test_reject_round_trip_through_the_worker(settings: Settings, session_factory: sessionmaker[Session],
                                              f: SimpleNamespace) -> None:
    post_id = _spool(session_factory, raw_mail(sender=STRANGER, subject="Publicité", body="Achetez !\n",
                                               message_id="s2@dip.example"), "forum@forum.test")
    process_pending(settings, session_factory, now=T0)
    with session_scope(session_factory) as session:
        token = session.scalar(select(HeldMessage.token))
    _spool(session_factory, raw_mail(sender=MOD_DE, to="forum-request@forum.test", subject="Re: x",
                                     body="ablehnen: Werbung ist hier nicht erlaubt\n", message_id="d2@x",
                                     in_reply_to=f"mod-{token}@forum.test"), "forum-request@forum.test")
    process_pending(settings, session_factory, now=T0 + timedelta(minutes=5))
    process_pending(settings, session_factory, now=T0 + timedelta(minutes=6))
    assert _status(session_factory, post_id)[0] == "dropped"
    with session_scope(session_factory) as session:
        assert session.scalar(select(Message).where(Message.message_id == "s2@dip.example")) is None
        to_author = list(session.scalars(select(OutboxMessage).where(OutboxMessage.recipient == STRANGER)
                                         .order_by(OutboxMessage.id)))
        assert b"Werbung ist hier nicht erlaubt" in (to_author[-1].payload or b"")


@pytest.mark.parametrize(
    "raw",
    [
        b"From: =?utf-8?q?Ev=0Ail?= <evil@example.org>\r\nSubject: =?utf-8?q?a=0A=0DBcc:_victim@example.org?=\r\n\r\nx",
        b"From: <evil@example.org>\r\nSubject: " + b"\xff\xfe{0}{list}%s" * 200 + b"\r\n\r\n\x00\x01",
        b"Subject: no sender at all\r\n\r\nbody",
        b"From: <evil@example.org>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: "
        b"application/octet-stream\r\n\r\n" + bytes(range(256)) * 40 + b"\r\n--b--\r\n",
    ],
)
def test_holding_garbage_mail(db: Session, settings: Settings, f: SimpleNamespace, raw: bytes) -> None:
    ctx = make_ctx(db, settings, raw, mailing_list=f.ml)
    held = hold_message(ctx, "not a member")
    assert "\n" not in held.subject and "\r" not in held.subject
    assert db.get(InboundMessage, held.inbound_id).status == "held"  # type: ignore[union-attr]
    notices = outbox(db, MOD_FR)
    assert len(notices) == 1 and "Bcc" not in notices[0]
