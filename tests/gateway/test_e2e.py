"""End to end: smtplib -> real aiosmtpd gateway (GatewayService) -> spool -> worker -> outbox -> relay (a real
aiosmtpd sink). What the sink receives is the ground truth."""

from __future__ import annotations

from email.header import decode_header, make_header

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import GatewayService
from passerelle import tokens
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.models import BounceEvent, InboundMessage, Message, OutboxMessage, Topic
from tests import corpus_dir
from tests.gateway.conftest import (
    AUTHOR,
    DIGEST_READER,
    LIST,
    NOMAIL_READER,
    READERS,
    Forum,
    StubResolver,
    make_mail,
    send,
    spool_statuses,
    wait_processed,
    wait_until,
)
from tests.smtp_sink import SmtpSink


def _topics(factory: sessionmaker[Session]) -> list[tuple[int, str, int, str]]:
    with session_scope(factory) as session:
        return [tuple(r) for r in session.execute(
            select(Topic.id, Topic.subject, Topic.message_count, Topic.status).order_by(Topic.id)
        )]


def _message_topic(factory: sessionmaker[Session], message_id: str) -> int:
    with session_scope(factory) as session:
        return session.scalar(select(Message.topic_id).where(Message.message_id == message_id))


def test_topic_then_replies_by_references_and_by_subject_prefix(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session]
) -> None:
    port = service.smtp_port
    reply = send(port, make_mail())
    assert reply.startswith("2.0.0 queued as #")
    wait_processed(session_factory, 1)
    assert _topics(session_factory) == [(1, "Travailleurs frontaliers : double imposition", 1, "open")]

    # A reply by In-Reply-To from another member: same topic, now "answered".
    send(port, make_mail(subject="Re: Travailleurs frontaliers : double imposition", sender=READERS[0],
                         sender_name="Hans Weber", message_id="r1@landkreis.example",
                         in_reply_to="m1@eurometropole.example", body="Siehe Abkommen Art. 13.\n"),
         mail_from=READERS[0])
    # Replies with nothing but a reply prefix (no In-Reply-To, no References), as real clients write them.
    prefixes = ["RE : ", "AW: ", "TR: ", "Réf. : ", "SV: ", "Re: AW: TR: "]
    for n, prefix in enumerate(prefixes):
        send(port, make_mail(subject=f"{prefix}Travailleurs frontaliers : double imposition", sender=READERS[1],
                             message_id=f"p{n}@regione.example", body=f"Risposta {n}\n"), mail_from=READERS[1])
    wait_processed(session_factory, 2 + len(prefixes))
    assert [s for _, s, _ in spool_statuses(session_factory)] == ["done"] * (2 + len(prefixes))
    assert _topics(session_factory) == [(1, "Travailleurs frontaliers : double imposition", 8, "answered")]
    with session_scope(session_factory) as session:
        parent = session.scalar(select(Message.parent_id).where(Message.message_id == "r1@landkreis.example"))
        assert parent == session.scalar(select(Message.id).where(Message.message_id == "m1@eurometropole.example"))

    # Fan-out: every instant reader got every message except their own; the digest, no-mail readers and the
    # author (lists.send_copy_to_author = false) got none.
    smtp_sink.wait_for(3 + 3 + 3 * len(prefixes))
    wait_until(lambda: _outbox_left(session_factory) == 0, what="outbox drained")
    by_rcpt: dict[str, list[str]] = {}
    for rcpt, received in smtp_sink.deliveries():
        by_rcpt.setdefault(rcpt, []).append(received.message["Message-ID"])
    assert set(by_rcpt) == {AUTHOR, *READERS}
    assert DIGEST_READER not in by_rcpt and NOMAIL_READER not in by_rcpt
    replies = [f"<p{n}@regione.example>" for n in range(len(prefixes))]
    assert sorted(by_rcpt[AUTHOR]) == sorted(["<r1@landkreis.example>", *replies])
    assert sorted(by_rcpt[READERS[0]]) == sorted(["<m1@eurometropole.example>", *replies])
    assert sorted(by_rcpt[READERS[1]]) == ["<m1@eurometropole.example>", "<r1@landkreis.example>"]
    assert sorted(by_rcpt[READERS[2]]) == sorted(["<m1@eurometropole.example>", "<r1@landkreis.example>", *replies])


def _outbox_left(factory: sessionmaker[Session]) -> int:
    with session_scope(factory) as session:
        return session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status.in_(("pending", "sending")))
        )


def test_copies_carry_list_headers_verp_and_the_original_ids(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session], fast_settings: Settings
) -> None:
    raw = make_mail(message_id="orig-42@eurometropole.example", in_reply_to="older@elsewhere.example",
                    references="<root@elsewhere.example> <older@elsewhere.example>",
                    extra_headers=(("DKIM-Signature", "v=1; a=rsa-sha256; d=eurometropole.example; b=abc"),
                                   ("Delivered-To", "forum@forum.test"), ("Return-Path", f"<{AUTHOR}>")))
    send(service.smtp_port, raw)
    received = smtp_sink.wait_for(3)
    with session_scope(session_factory) as session:
        message = session.scalar(select(Message))
        topic_id, message_pk = message.topic_id, message.id
    for item in received:
        rcpt = item.rcpt_tos[0]
        msg = item.message
        # VERP return path: a bounce names the member even when its text is unreadable.
        assert item.mail_from == f"forum-bounces+{rcpt.replace('@', '=')}@forum.test"
        assert msg["Message-ID"] == "<orig-42@eurometropole.example>"
        assert msg["In-Reply-To"] == "<older@elsewhere.example>"
        assert msg["References"] == "<root@elsewhere.example> <older@elsewhere.example>"
        assert msg["Date"] == "Mon, 02 Nov 2026 10:00:00 +0000"
        assert msg["From"] == f"Camille Martin <{AUTHOR}>"
        assert msg["Subject"] == "Travailleurs frontaliers : double imposition"
        assert msg["DKIM-Signature"].startswith("v=1;")
        assert msg["List-Id"] == "Forum transfrontalier <forum.forum.test>"
        assert msg["List-Post"] == "<mailto:forum@forum.test>"
        assert msg["List-Archive"] == "<http://archive.test/>"
        assert msg["Archived-At"] == "<http://archive.test/m/orig-42@eurometropole.example>"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["X-Loop"] == "forum@forum.test"
        assert msg["Precedence"] == "list"
        assert msg["Delivered-To"] is None and msg["Return-Path"] is None
        assert len(msg.get_all("List-Id")) == 1
        web, mailto = [p.strip() for p in " ".join(msg["List-Unsubscribe"].split()).split(",")]
        assert mailto == "<mailto:forum-request@forum.test?subject=unsubscribe>"
        assert web.startswith("<http://archive.test/u/") and web.endswith(">")
        token = web[len("<http://archive.test/u/"):-1]
        assert tokens.unsign(fast_settings, "unsubscribe", token) == {"list": "forum", "email": rcpt}
        # Body and MIME structure untouched (DKIM body hash still verifies).
        assert item.data.split(b"\r\n\r\n", 1)[1] == raw.split(b"\r\n\r\n", 1)[1]
    assert topic_id == 1 and message_pk == 1


def test_unknown_recipient_550_names_the_lists(service: GatewayService) -> None:
    import smtplib

    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=10) as client:
        client.ehlo("client.test")
        client.mail(AUTHOR)
        code, reply = client.rcpt("froum@forum.test")
        assert code == 550
        text = reply.decode()
        assert "5.1.1 <froum@forum.test>: no such list here" in text
        assert "forum@forum.test" in text
        code, reply = client.rcpt("someone@gmail.example")
        assert code == 550 and b"relaying denied" in reply


def test_database_unavailable_gives_451_and_nothing_is_lost(
    fast_settings: Settings, session_factory: sessionmaker[Session], forum: Forum, smtp_sink: SmtpSink
) -> None:
    import smtplib

    svc = GatewayService(fast_settings, session_factory, worker=False, delivery=False)
    svc.start()
    try:
        with session_scope(session_factory) as session:
            session.connection().exec_driver_sql("ALTER TABLE inbound_messages RENAME TO inbound_messages_away")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(svc.smtp_port, make_mail())
        assert refused.value.smtp_code == 451
        assert b"4.3.0 temporarily unable to store the message, try again later" in refused.value.smtp_error
        # The sender's MTA retries later; by then the database is back.
        with session_scope(session_factory) as session:
            session.connection().exec_driver_sql("ALTER TABLE inbound_messages_away RENAME TO inbound_messages")
        assert send(svc.smtp_port, make_mail()).startswith("2.0.0 queued as #")
        assert [s for _, s, _ in spool_statuses(session_factory)] == ["new"]
    finally:
        svc.stop()


@pytest.mark.parametrize("kind", ["loop-list-id", "loop-x-loop", "loop-own-id", "auto-submitted", "vacation-fr",
                                  "precedence-bulk"])
def test_loops_and_auto_replies_are_not_posted(
    kind: str, service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session]
) -> None:
    headers: tuple[tuple[str, str], ...] = ()
    subject = "Re: Travailleurs frontaliers"
    message_id = "x1@eurometropole.example"
    if kind == "loop-list-id":
        headers = (("List-Id", "Forum transfrontalier <forum.forum.test>"),)
    elif kind == "loop-x-loop":
        headers = (("X-Loop", "forum@forum.test"),)
    elif kind == "loop-own-id":
        message_id = "notice.0123abcd@forum.test"
    elif kind == "auto-submitted":
        headers = (("Auto-Submitted", "auto-replied"),)
    elif kind == "vacation-fr":
        subject = "Réponse automatique : absence du bureau"
    elif kind == "precedence-bulk":
        headers = (("Precedence", "bulk"),)
    send(service.smtp_port, make_mail(subject=subject, message_id=message_id, extra_headers=headers))
    [(_, status, reason)] = wait_processed(session_factory, 1)
    assert status == "dropped", reason
    assert ("loop" if kind.startswith("loop") else "automatic reply") in reason
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_real_bounce_to_verp_address_is_scored_not_posted(
    service: GatewayService, session_factory: sessionmaker[Session]
) -> None:
    bounce = (corpus_dir() / "sisimai-bounces").rglob("*.eml")
    raw = None
    for path in sorted(bounce):
        data = path.read_bytes()
        if b"multipart/report" in data and b"5.1.1" in data:
            raw = data
            break
    assert raw is not None, "no RFC 3464 5.1.1 bounce found in the sisimai corpus"
    reader = READERS[0]
    verp = f"forum-bounces+{reader.replace('@', '=')}@forum.test"
    send(service.smtp_port, raw, mail_from="", rcpt=(verp,))
    [(_, status, reason)] = wait_processed(session_factory, 1)
    assert status == "bounce", reason
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0
        events = list(session.scalars(select(BounceEvent)))
        assert events and all(e.inbound_id == 1 for e in events)


@pytest.mark.parametrize("reply_to", ["list", "author"])
def test_dmarc_strict_author_domain_gets_from_rewritten(
    fast_settings: Settings, session_factory: sessionmaker[Session], forum: Forum, smtp_sink: SmtpSink, reply_to: str
) -> None:
    settings = fast_settings.with_overrides({"dmarc": {"enabled": True}, "lists": {"reply_to": reply_to}})
    resolver = StubResolver({"_dmarc.eurometropole.example": ["v=DMARC1; p=reject; rua=mailto:d@x.example"]})
    with GatewayService(settings, session_factory, resolver=resolver) as svc:
        send(svc.smtp_port, make_mail())
        send(svc.smtp_port, make_mail(sender=READERS[0], sender_name="Hans Weber", message_id="h1@landkreis.example",
                                      subject="Grenzgänger"), mail_from=READERS[0])
        smtp_sink.wait_for(3 + 3)
    for item in smtp_sink.received:
        msg = item.message
        if msg["Message-ID"] == "<m1@eurometropole.example>":
            rewritten = str(make_header(decode_header(msg["From"])))
            assert rewritten == "Camille Martin via Forum transfrontalier <forum@forum.test>"
            if reply_to == "list":
                # "Reply" posts to the forum; the author, hidden from From, is in Cc for a private answer.
                assert msg["Reply-To"] == "forum@forum.test"
                assert msg["Cc"] == f"Camille Martin <{AUTHOR}>"
            else:
                assert msg["Reply-To"] == f"Camille Martin <{AUTHOR}>"
                assert msg["Cc"] is None
        else:
            # landkreis.example publishes no DMARC record: From kept.
            assert msg["From"] == f"Hans Weber <{READERS[0]}>"
            assert msg["Reply-To"] == ("forum@forum.test" if reply_to == "list" else None)
            assert msg["Cc"] is None
    assert "_dmarc.eurometropole.example" in resolver.queries


def test_relay_refusals_are_per_recipient_and_4xx_is_retried(
    fast_settings: Settings, session_factory: sessionmaker[Session], forum: Forum, smtp_sink: SmtpSink
) -> None:
    smtp_sink.handler.refuse_rcpt[READERS[0]] = "550 5.1.1 no such user"
    smtp_sink.handler.refuse_rcpt[READERS[1]] = "451 4.2.0 greylisted, try again"
    with GatewayService(fast_settings, session_factory) as svc:
        send(svc.smtp_port, make_mail())
        smtp_sink.wait_for(1)
        wait_until(lambda: _outbox_row(session_factory, READERS[1]) == ("pending", 1), what="the 451 recorded")
        assert _outbox_row(session_factory, READERS[0]) == ("failed", 1)
        assert [r.rcpt_tos for r in smtp_sink.received] == [[READERS[2]]]
        del smtp_sink.handler.refuse_rcpt[READERS[1]]
        # retry_initial_seconds is 1 in the test settings: the deliverer's next polls retry it.
        smtp_sink.wait_for(2, timeout=15)
    with session_scope(session_factory) as session:
        rows = {r.recipient: r for r in session.scalars(select(OutboxMessage))}
    assert rows[READERS[0]].status == "failed" and "550 5.1.1 no such user" in rows[READERS[0]].last_error
    assert rows[READERS[1]].status == "sent" and rows[READERS[1]].attempts == 2
    assert rows[READERS[2]].status == "sent" and rows[READERS[2]].attempts == 1
    assert sorted(r.rcpt_tos[0] for r in smtp_sink.received) == sorted([READERS[1], READERS[2]])


def _outbox_row(factory: sessionmaker[Session], recipient: str) -> tuple[str, int] | None:
    with session_scope(factory) as session:
        row = session.execute(
            select(OutboxMessage.status, OutboxMessage.attempts).where(OutboxMessage.recipient == recipient)
        ).first()
        return (row[0], row[1]) if row else None


def test_restart_after_250_delivers_exactly_once(
    fast_settings: Settings, session_factory: sessionmaker[Session], forum: Forum, smtp_sink: SmtpSink
) -> None:
    # First life: the gateway answers 250 and dies before its worker processed anything.
    first = GatewayService(fast_settings, session_factory, worker=False, delivery=False)
    first.start()
    assert send(first.smtp_port, make_mail()).startswith("2.0.0 queued")
    assert send(first.smtp_port, make_mail(message_id="m2@eurometropole.example", subject="Autre sujet"))
    first.stop()
    # A second message was claimed by a worker that crashed mid-way: its claim is old.
    with session_scope(session_factory) as session:
        row = session.get(InboundMessage, 2)
        row.status, row.claimed_by = "processing", "worker@dead-host:1:1"
        row.claimed_at = row.received_at.replace(year=row.received_at.year - 1)
    assert smtp_sink.received == []
    # Second life: everything spooled is finished, once.
    with GatewayService(fast_settings, session_factory) as svc:
        smtp_sink.wait_for(6)
        wait_until(lambda: _outbox_left(session_factory) == 0, what="outbox drained")
        assert svc.smtp_port
    seen = [(rcpt, r.message["Message-ID"]) for rcpt, r in smtp_sink.deliveries()]
    assert len(seen) == len(set(seen)) == 6
    assert [s for _, s, _ in spool_statuses(session_factory)] == ["done", "done"]
    # A third start finds nothing to do: no copy goes out twice.
    with GatewayService(fast_settings, session_factory):
        pass
    assert len(smtp_sink.deliveries()) == 6


def test_message_without_message_id_gets_one_and_copies_carry_it(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session]
) -> None:
    send(service.smtp_port, make_mail(message_id=None))
    received = smtp_sink.wait_for(3)
    with session_scope(session_factory) as session:
        assigned = session.scalar(select(Message.message_id))
    assert assigned.endswith("@passerelle.invalid")
    assert {r.message["Message-ID"] for r in received} == {f"<{assigned}>"}
    assert all(len(r.message.get_all("Message-ID")) == 1 for r in received)


def test_thirty_megabytes_refused_at_default_limit(
    service: GatewayService, session_factory: sessionmaker[Session]
) -> None:
    import smtplib

    big = make_mail(body="x" * 76 + "\n") + b"y" * (30 * 1024 * 1024)
    # smtplib announces SIZE= when the server offers it: refused before a byte of data is sent.
    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=30) as client, \
            pytest.raises(smtplib.SMTPSenderRefused) as refused:
        client.sendmail(AUTHOR, [LIST], big)
    assert refused.value.smtp_code == 552
    assert spool_statuses(session_factory) == []


@pytest.mark.slow
def test_end_to_end_ingest_rate(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session]
) -> None:
    """Messages per second from the first SMTP command until every one is archived and fanned out."""
    import smtplib
    import time

    count = 200
    mails = [make_mail(message_id=f"rate-{n}@eurometropole.example", subject=f"Sujet {n // 2}" if n % 2 == 0
                       else f"Re: Sujet {n // 2}") for n in range(count)]
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=30) as client:
        for raw in mails:
            client.sendmail(AUTHOR, [LIST], raw)
    accepted = time.perf_counter() - started
    wait_processed(session_factory, count, timeout=120)
    archived = time.perf_counter() - started
    smtp_sink.wait_for(count * len(READERS), timeout=120)
    delivered = time.perf_counter() - started
    print(f"\nend to end: {count} messages accepted in {accepted:.2f}s ({count / accepted:.0f}/s),"
          f" archived in {archived:.2f}s ({count / archived:.0f} msg/s),"
          f" {count * len(READERS)} copies delivered in {delivered:.2f}s")
    assert [s for _, s, _ in spool_statuses(session_factory)] == ["done"] * count
