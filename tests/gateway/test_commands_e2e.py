"""Mail commands and moderation end to end: smtplib -> the real aiosmtpd gateway (GatewayService) -> worker ->
outbox -> the SMTP sink standing in for the relay. People answer the mails the sink received, as they would."""

from __future__ import annotations

from email.message import Message as EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import GatewayService
from passerelle.db import session_scope
from passerelle.models import InboundMessage, Member, Message, Subscription, Topic
from tests.gateway.command_util import body_of, subject_of
from tests.gateway.conftest import AUTHOR, READERS, StubResolver, make_mail, send, wait_processed, wait_until
from tests.gateway.dkim_util import rsa_key, sign
from tests.smtp_sink import SmtpSink

MOD = "moderation@eurometropole.example"
DOMAIN = "eurometropole.example"
SUBJECT = "Travailleurs frontaliers : double imposition"


def mails_to(sink: SmtpSink, address: str) -> list[EmailMessage]:
    return [r.message for r in sink.received if address in r.rcpt_tos]


def wait_mail(sink: SmtpSink, address: str, what: str, count: int = 1) -> EmailMessage:
    """The ``count``-th mail the relay received for ``address``."""
    mails = wait_until(lambda: (m := mails_to(sink, address)) and len(m) >= count and m, timeout=15,
                       what=f"{what} for {address}")
    return mails[count - 1]


def start_topic(port: int, factory: sessionmaker[Session]) -> int:
    send(port, make_mail())
    wait_processed(factory, 1)
    with session_scope(factory) as session:
        topic_id = session.scalar(select(Topic.id))
        assert topic_id is not None
        return topic_id


def topic_state(factory: sessionmaker[Session], topic_id: int) -> tuple[str, str | None]:
    with session_scope(factory) as session:
        topic = session.get(Topic, topic_id)
        assert topic is not None
        return topic.status, topic.outcome


def test_subscribe_by_mail_and_confirm_by_reply(service: GatewayService, smtp_sink: SmtpSink,
                                                session_factory: sessionmaker[Session]) -> None:
    newcomer = "lena.schmidt@ortenau.example"
    send(service.smtp_port, make_mail(to="forum+subscribe@forum.test", sender=newcomer, sender_name="Lena Schmidt",
                                      subject="", body="", message_id="s1@ortenau.example"),
         mail_from=newcomer, rcpt=("forum+subscribe@forum.test",))
    confirmation = wait_mail(smtp_sink, newcomer, "the confirmation request")
    reply_to = confirmation["Reply-To"]
    assert reply_to.startswith("forum+confirm-") and "[confirm " in subject_of(confirmation)
    # Lena hits "Reply" in her mail program.
    send(service.smtp_port, make_mail(to=reply_to, sender=newcomer, sender_name="Lena Schmidt",
                                      subject="Re: " + subject_of(confirmation), message_id="s2@ortenau.example",
                                      in_reply_to=confirmation["Message-ID"].strip("<>"),
                                      body="Ja.\n\n> " + body_of(confirmation).replace("\n", "\n> ")),
         mail_from=newcomer, rcpt=(reply_to,))
    welcome = wait_mail(smtp_sink, newcomer, "the welcome mail", count=2)
    assert "forum@forum.test" in body_of(welcome)
    with session_scope(session_factory) as session:
        sub = session.scalar(select(Subscription).join(Member).where(Member.email == newcomer))
        assert sub is not None and sub.status == "active"
    # Lena is now a reader: the next post reaches her.
    send(service.smtp_port, make_mail(message_id="m9@eurometropole.example"))
    copy = wait_mail(smtp_sink, newcomer, "a list copy", count=3)
    assert copy["Message-ID"] == "<m9@eurometropole.example>"


def test_dkim_signed_moderator_command_is_obeyed_and_not_fanned_out(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session], resolver: StubResolver
) -> None:
    resolver.records[f"sel1._domainkey.{DOMAIN}"] = [f"v=DKIM1; k=rsa; p={rsa_key().public_b64}"]
    topic_id = start_topic(service.smtp_port, session_factory)
    smtp_sink.wait_for(len(READERS))
    raw = sign(make_mail(sender=MOD, sender_name="Modération", subject=f"Re: {SUBJECT}",
                         message_id="c1@eurometropole.example", in_reply_to="m1@eurometropole.example",
                         body="#clos résolu\n#tag fiscalité\n"), domain=DOMAIN)
    send(service.smtp_port, raw, mail_from=MOD)
    reply = wait_mail(smtp_sink, MOD, "the result of the commands")
    assert "est clos" in body_of(reply)
    assert topic_state(session_factory, topic_id) == ("closed", "solved")
    with session_scope(session_factory) as session:
        assert session.scalar(select(Message).where(Message.message_id == "c1@eurometropole.example")) is None
        statuses = [s for (s,) in session.execute(select(InboundMessage.status).order_by(InboundMessage.id))]
        assert statuses == ["done", "command"]
    assert all(r.message["Message-ID"] != "<c1@eurometropole.example>" for r in smtp_sink.received)


def test_forged_moderator_command_is_confirmed_by_reply(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session]
) -> None:
    topic_id = start_topic(service.smtp_port, session_factory)
    send(service.smtp_port, make_mail(sender=MOD, subject=f"Re: {SUBJECT}", message_id="c2@eurometropole.example",
                                      in_reply_to="m1@eurometropole.example", body="#geschlossen duplikat\n"),
         mail_from=MOD)
    confirmation = wait_mail(smtp_sink, MOD, "the confirmation request")
    assert "#geschlossen duplikat" in body_of(confirmation)
    assert topic_state(session_factory, topic_id) == ("open", None), "nothing changes before the confirmation"
    send(service.smtp_port, make_mail(sender=MOD, to=confirmation["Reply-To"], subject="Re: confirm",
                                      message_id="c3@eurometropole.example", body="oui\n"),
         mail_from=MOD, rcpt=(confirmation["Reply-To"],))
    wait_mail(smtp_sink, MOD, "the result of the confirmed commands", count=2)
    assert topic_state(session_factory, topic_id) == ("closed", "duplicate")


def test_moderator_reopens_a_closed_topic_by_replying(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session], resolver: StubResolver
) -> None:
    resolver.records[f"sel1._domainkey.{DOMAIN}"] = [f"v=DKIM1; k=rsa; p={rsa_key().public_b64}"]
    topic_id = start_topic(service.smtp_port, session_factory)
    with session_scope(session_factory) as session:
        topic = session.get(Topic, topic_id)
        assert topic is not None
        topic.status, topic.outcome = "closed", "solved"
    raw = sign(make_mail(sender=MOD, subject=f"Re: {SUBJECT}", message_id="c4@eurometropole.example",
                         in_reply_to="m1@eurometropole.example",
                         body="#rouvrir\n\nLa caisse revient sur sa décision : voir la circulaire.\n"), domain=DOMAIN)
    send(service.smtp_port, raw, mail_from=MOD)
    copy = wait_mail(smtp_sink, READERS[0], "the moderator's post", count=2)
    assert copy["Message-ID"] == "<c4@eurometropole.example>"
    text = copy.get_payload(decode=True).decode()
    assert "#rouvrir" not in text and "La caisse revient" in text
    # Reopened, and the moderator's words were posted: someone other than the author answered.
    assert topic_state(session_factory, topic_id) == ("answered", None)


def test_held_post_approved_by_replying_to_the_notice(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session]
) -> None:
    stranger = "pablo.ruiz@gobierno.example"
    send(service.smtp_port, make_mail(sender=stranger, sender_name="Pablo Ruiz", message_id="h1@gobierno.example",
                                      subject="Trabajadores fronterizos"), mail_from=stranger)
    notice = wait_mail(smtp_sink, MOD, "the moderation notice")
    assert "Trabajadores fronterizos" in subject_of(notice)
    assert "attend une modération" in subject_of(wait_mail(smtp_sink, stranger, "the author's notice"))
    send(service.smtp_port, make_mail(sender=MOD, to=notice["Reply-To"], subject="Re: " + subject_of(notice),
                                      message_id="d1@eurometropole.example", body="approuver\n"),
         mail_from=MOD, rcpt=(notice["Reply-To"],))
    for reader in READERS:
        copy = wait_mail(smtp_sink, reader, "the approved post")
        assert copy["Message-ID"] == "<h1@gobierno.example>"
    assert "accepté" in body_of(wait_mail(smtp_sink, MOD, "the decision's result", count=2))
    assert wait_mail(smtp_sink, AUTHOR, "the approved post")["Message-ID"] == "<h1@gobierno.example>"
    assert [subject_of(m) for m in mails_to(smtp_sink, stranger)] == [
        "[forum] Votre message attend une modération : Trabajadores fronterizos"
    ], "the stranger is told it is held, and is not subscribed by being approved"
