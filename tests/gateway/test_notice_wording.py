"""The mails the gateway writes, as a new user reads them (the demo's user test): smtplib -> the real aiosmtpd
gateway -> worker -> outbox -> the SMTP sink standing in for the relay.

The forum's language is French and its title "Forum transfrontalier"; its members read French unless a test
says otherwise."""

from __future__ import annotations

from email.message import Message as EmailMessage

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.command_parse import phrase
from gateway.service import GatewayService
from passerelle.db import session_scope
from passerelle.models import InboundMessage, Member, Message, OutboxMessage, Subscription, Topic
from tests.gateway.command_util import body_of, subject_of
from tests.gateway.conftest import AUTHOR, LIST, READERS, make_mail, send, wait_processed, wait_until
from tests.smtp_sink import Received, SmtpSink

MOD = "moderation@eurometropole.example"
REQUEST = "forum-request@forum.test"
TITLE = "Forum transfrontalier"
STRANGER = "jean@stranger.example"
LANGS = ("fr", "en", "de", "it", "es")


def received_by(sink: SmtpSink, address: str) -> list[Received]:
    return [r for r in sink.received if address in r.rcpt_tos]


def wait_mail(sink: SmtpSink, address: str, what: str, count: int = 1) -> EmailMessage:
    """The ``count``-th mail the relay received for ``address``."""
    mails = wait_until(lambda: (m := received_by(sink, address)) and len(m) >= count and m, timeout=15,
                       what=f"{what} for {address}")
    return mails[count - 1].message


def set_language(factory: sessionmaker[Session], email: str, language: str) -> None:
    with session_scope(factory) as session:
        member = session.scalar(select(Member).where(Member.email == email))
        assert member is not None
        member.language = language


def request_mail(sender: str, *, subject: str = "", body: str = "", message_id: str, name: str = "") -> bytes:
    return make_mail(to=REQUEST, sender=sender, sender_name=name, subject=subject, body=body, message_id=message_id)


# ============================================================================================ empty posts


@pytest.mark.parametrize("language", ["fr", "de"])
def test_an_empty_mail_is_not_posted_and_its_author_is_told_in_their_language(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session], language: str
) -> None:
    set_language(session_factory, AUTHOR, language)
    send(service.smtp_port, make_mail(subject="", body="", message_id="empty@eurometropole.example"))
    notice = wait_mail(smtp_sink, AUTHOR, "the 'nothing was posted' notice")
    assert subject_of(notice).startswith("[forum] ")
    body = body_of(notice)
    assert phrase("refuse.empty", language).splitlines()[0] in body
    assert TITLE in body
    assert notice["In-Reply-To"] == "<empty@eurometropole.example>"
    rows = wait_processed(session_factory, 1)
    assert rows[0][1] == "dropped" and "empty message" in rows[0][2]
    with session_scope(session_factory) as session:
        assert session.scalar(select(Topic.id)) is None and session.scalar(select(Message.id)) is None
    assert all(r.rcpt_tos == [AUTHOR] for r in smtp_sink.received), "nothing was fanned out"


def test_a_bare_re_with_an_attachment_is_a_post_not_an_empty_mail(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session]
) -> None:
    raw = (
        f"From: Camille Martin <{AUTHOR}>\r\nTo: {LIST}\r\nSubject: Re:\r\nMessage-ID: <att@eurometropole.example>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        "--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\r\n"
        "--XX\r\nContent-Type: application/pdf; name=plan.pdf\r\nContent-Disposition: attachment; filename=plan.pdf\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--XX--\r\n"
    ).encode()
    send(service.smtp_port, raw)
    rows = wait_processed(session_factory, 1)
    assert rows[0][1] == "done", rows
    wait_mail(smtp_sink, READERS[0], "the copy of the attachment")


# ============================================================================================ held posts


@pytest.mark.parametrize("mod_language", ["fr", "de"])
def test_the_held_reason_is_in_each_readers_language(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session], mod_language: str
) -> None:
    set_language(session_factory, MOD, mod_language)
    send(service.smtp_port, make_mail(sender=STRANGER, sender_name="Jean Inconnu", subject="Demande d'information",
                                      message_id="h1@stranger.example"), mail_from=STRANGER)
    to_mod = body_of(wait_mail(smtp_sink, MOD, "the held notice"))
    to_author = body_of(wait_mail(smtp_sink, STRANGER, "the 'waiting for a moderator' notice"))
    assert phrase("reason.non_member", mod_language, sender=STRANGER, list=TITLE) in to_mod
    # The stranger has no language of their own: the list's (French).
    assert phrase("reason.non_member", "fr", sender=STRANGER, list=TITLE) in to_author
    assert "is not a member" not in to_author
    if mod_language != "en":
        assert "is not a member" not in to_mod
    with session_scope(session_factory) as session:
        reason = session.scalar(select(InboundMessage.reason))
        assert reason == f"held #1: {STRANGER} is not a member of {TITLE}", "operators read English"


# ============================================================================================ command replies


HELP_WORDS = {"fr": "aide", "en": "help", "de": "hilfe", "it": "aiuto", "es": "ayuda"}


@pytest.mark.parametrize("language", LANGS)
def test_a_help_reply_has_no_empty_bullet(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session], language: str
) -> None:
    set_language(session_factory, AUTHOR, language)
    send(service.smtp_port, request_mail(AUTHOR, subject=HELP_WORDS[language], message_id="help@eurometropole.example"),
         rcpt=(REQUEST,))
    reply = wait_mail(smtp_sink, AUTHOR, "the help")
    body = body_of(reply)
    assert "\n-\n" not in body and not body.rstrip().endswith("\n-")
    assert phrase("reply.help_only", language) in body
    assert phrase("reply.done_intro", language) not in body
    assert REQUEST in body


def test_a_request_without_subject_gets_a_meaningful_reply_subject(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session]
) -> None:
    send(service.smtp_port, request_mail(AUTHOR, body="quotidien\n", message_id="nosubj@eurometropole.example"),
         rcpt=(REQUEST,))
    reply = wait_mail(smtp_sink, AUTHOR, "the result")
    assert subject_of(reply) == "[forum] Re: Votre demande"
    body = body_of(reply)
    assert phrase("reply.done_intro", "fr") in body
    assert f"Votre mode de réception pour {TITLE} est désormais" in body


def test_a_confirmation_request_has_a_clean_subject_and_a_stated_reason(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session]
) -> None:
    # "désabonner" needs a proof of sender; this unsigned mail has none: a confirmation is asked.
    send(service.smtp_port, request_mail(AUTHOR, subject="désabonner", message_id="unsub@eurometropole.example"),
         rcpt=(REQUEST,))
    wait_mail(smtp_sink, AUTHOR, "the confirmation request")
    raw = received_by(smtp_sink, AUTHOR)[0].data
    header_lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    subject_line = next(line for line in header_lines if line.lower().startswith(b"subject:"))
    assert subject_line.startswith(b"Subject: [forum] Merci de confirmer vos commandes [confirm "), header_lines
    body = body_of(received_by(smtp_sink, AUTHOR)[0].message)
    assert "(-)" not in body
    assert "ni signature DKIM valide de votre domaine" in body and "détail : no DKIM signature" in body
    with session_scope(session_factory) as session:
        sub = session.scalar(select(Subscription).join(Member).where(Member.email == AUTHOR))
        assert sub is not None and sub.status == "active", "nothing changes before the confirmation"


def test_topic_commands_sent_to_the_request_address_are_explained(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session]
) -> None:
    send(service.smtp_port, request_mail(MOD, body="#close 11 solved\n", message_id="close@eurometropole.example"),
         mail_from=MOD, rcpt=(REQUEST,))
    body = body_of(wait_mail(smtp_sink, MOD, "the answer"))
    assert phrase("no_command", "fr") not in body
    assert "n’ont pas été comprises" not in body
    assert phrase("request.topic_commands", "fr", line="#close 11 solved", post=LIST, request=REQUEST) in body
    assert "Commandes de modération" in body, "a moderator gets the moderators' help with it"


# ============================================================================================ subscription


@pytest.mark.parametrize("word", ["subscribe", "abonner", "abonnieren"])
def test_a_stranger_is_answered_in_the_lists_language_whatever_the_command_word(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session], word: str
) -> None:
    send(service.smtp_port, request_mail(STRANGER, subject=word, message_id=f"{word}@stranger.example"),
         mail_from=STRANGER, rcpt=(REQUEST,))
    confirmation = wait_mail(smtp_sink, STRANGER, "the confirmation request")
    assert subject_of(confirmation).startswith("[forum] Confirmez votre abonnement [confirm ")


def test_subscribing_sends_one_mail(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session]
) -> None:
    send(service.smtp_port, request_mail("marie@nouvelle.example", name="Marie Nouvelle", subject="abonner",
                                         body="Bonjour, je souhaite m'abonner.\n", message_id="sub@nouvelle.example"),
         mail_from="marie@nouvelle.example", rcpt=(REQUEST,))
    wait_mail(smtp_sink, "marie@nouvelle.example", "the confirmation request")
    wait_processed(session_factory, 1)
    # The outbox is sent right after the worker's commit; a second mail would have been queued with the first.
    with session_scope(session_factory) as session:
        queued = session.scalars(select(OutboxMessage.kind).where(OutboxMessage.recipient == "marie@nouvelle.example"))
        assert list(queued) == ["confirm"]
    assert len(received_by(smtp_sink, "marie@nouvelle.example")) == 1


# ============================================================================================ posts and topics


def test_a_members_topic_command_is_reported_precisely_with_the_lists_title(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session]
) -> None:
    send(service.smtp_port, make_mail(subject="Covoiturage transfrontalier #close solved",
                                      message_id="cov@eurometropole.example"))
    copy = wait_mail(smtp_sink, READERS[0], "the copy")
    assert "#close solved" in subject_of(copy), "posted as written"
    reply = wait_mail(smtp_sink, AUTHOR, "the note about #close")
    body = body_of(reply)
    assert phrase("mod.not_moderator_post", "fr", list=TITLE, commands="#close solved") in body
    with session_scope(session_factory) as session:
        topic = session.scalar(select(Topic))
        assert topic is not None and topic.subject == "Covoiturage transfrontalier #close solved"
        assert topic.status == "open"


def test_the_closed_topic_notice_is_tagged_and_names_the_forum_once(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session]
) -> None:
    subject = "Travailleurs frontaliers : double imposition"
    send(service.smtp_port, make_mail(subject=subject))
    wait_processed(session_factory, 1)
    with session_scope(session_factory) as session:
        topic = session.scalar(select(Topic))
        assert topic is not None
        topic.status, topic.outcome = "closed", "solved"
    reader = READERS[0]
    send(service.smtp_port, make_mail(sender=reader, sender_name="", subject=f"Re: {subject}",
                                      message_id="late@landkreis.example", in_reply_to="m1@eurometropole.example"),
         mail_from=reader)
    notices = wait_until(lambda: [r.message for r in received_by(smtp_sink, reader) if "clos" in subject_of(r.message)],
                         timeout=15, what="the closed-topic notice")
    notice = notices[0]
    assert subject_of(notice) == f"[forum] Sujet clos : {subject}"
    body = " ".join(body_of(notice).split())
    assert f"clos par les modérateurs de {TITLE}" in body and "du forum Forum" not in body
