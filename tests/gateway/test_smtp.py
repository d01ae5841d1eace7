"""The SMTP listener alone (worker and deliverer off): what it accepts at RCPT, what it spools at DATA, and
how it answers garbage. Every accepted message is in the spool with its exact bytes; every refusal is a
reply a person can act on."""

from __future__ import annotations

import random
import smtplib
import socket
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.recipients import classify_local
from gateway.service import GatewayService
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.models import InboundMessage
from tests.factories import make_list
from tests.gateway.conftest import AUTHOR, LIST, Forum, make_mail, send


@pytest.fixture
def listener(
    fast_settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> Iterator[GatewayService]:
    with session_scope(session_factory) as session:
        make_list(session, "forum-dev", title="Dev")
    svc = GatewayService(
        fast_settings.with_overrides({"lists": {"max_message_bytes": 200_000}}),
        session_factory, worker=False, delivery=False,
    )
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def _spool(factory: sessionmaker[Session]) -> list[InboundMessage]:
    with session_scope(factory) as session:
        rows = list(session.scalars(select(InboundMessage).order_by(InboundMessage.id)))
        for row in rows:
            _ = row.raw
        return rows


def _rcpt(port: int, *addresses: str) -> list[tuple[int, str]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        client.mail(AUTHOR)
        return [(code, reply.decode()) for code, reply in (client.rcpt(a) for a in addresses)]


def test_rcpt_accepts_every_list_address_and_refuses_the_rest(listener: GatewayService) -> None:
    accepted = [
        "forum@forum.test", "FORUM@Forum.Test", "forum-request@forum.test", "forum+subscribe@forum.test",
        "forum+unsubscribe@forum.test", "forum+digest@forum.test", "forum+help@forum.test",
        "forum-bounces@forum.test", "forum-bounces+alice=example.org@forum.test", "forum-owner@forum.test",
        "forum-dev@forum.test", "forum-dev-request@forum.test", "forum-join@forum.test",
    ]
    for code, reply in _rcpt(listener.smtp_port, *accepted):
        assert code == 250, reply
    [(code, reply)] = _rcpt(listener.smtp_port, "nobody@forum.test")
    assert code == 550
    assert reply.startswith("5.1.1 <nobody@forum.test>: no such list here; lists on this server:")
    assert "forum@forum.test" in reply and "forum-dev@forum.test" in reply and "LIST-request@forum.test" in reply
    [(code, reply)] = _rcpt(listener.smtp_port, "forum@other.example")
    assert code == 550 and reply.startswith("5.7.1") and "relaying denied" in reply
    [(code, _)] = _rcpt(listener.smtp_port, "forum+@forum.test")
    assert code == 550


def test_classify_local_prefers_the_longest_list_name() -> None:
    names = ["forum", "forum-dev"]
    assert classify_local("forum-dev-request", names).list_name == "forum-dev"
    assert classify_local("forum-dev", names).role == "post"
    assert classify_local("forum-bounces+a=b.example", names).detail == "a=b.example"
    assert classify_local("Forum+Subscribe", names).detail == "subscribe"
    assert classify_local("forum-leave", names).detail == "unsubscribe"
    assert classify_local("forum-confirm+abc123", names).detail == "confirm+abc123"
    assert classify_local("forum-devx", names) is None
    assert classify_local("forum-owner+x", names) is None


def test_data_is_spooled_byte_for_byte_before_250(
    listener: GatewayService, session_factory: sessionmaker[Session]
) -> None:
    raw = make_mail()
    reply = send(listener.smtp_port, raw)
    [row] = _spool(session_factory)
    assert reply == f"2.0.0 queued as #{row.id}"
    assert row.raw == raw
    assert row.status == "new" and row.list_name == "forum" and row.envelope_to == [LIST]
    assert row.envelope_from == AUTHOR and row.message_id_header == "m1@eurometropole.example"


def test_several_lists_in_one_envelope_make_one_row_each(
    listener: GatewayService, session_factory: sessionmaker[Session]
) -> None:
    reply = send(listener.smtp_port, make_mail(),
                 rcpt=(LIST, "forum-dev@forum.test", "Forum@forum.test", "forum-request@forum.test"))
    rows = _spool(session_factory)
    assert reply == "2.0.0 queued as " + " ".join(f"#{r.id}" for r in rows)
    assert [(r.list_name, r.envelope_to) for r in rows] == [
        ("forum", [LIST, "Forum@forum.test"]),
        ("forum-dev", ["forum-dev@forum.test"]),
        ("forum", ["forum-request@forum.test"]),
    ]


def test_null_sender_is_accepted(listener: GatewayService, session_factory: sessionmaker[Session]) -> None:
    send(listener.smtp_port, make_mail(), mail_from="", rcpt=("forum-bounces+a=b.example@forum.test",))
    [row] = _spool(session_factory)
    assert row.envelope_from == ""


def test_paths_plain_and_unusual_are_read_alike(
    listener: GatewayService, session_factory: sessionmaker[Session]
) -> None:
    """The plain "<local@domain>" paths (read without the full RFC 5322 parser) and the unusual ones (quoted
    local part, a comment after the path, parameters after white space) give the same envelope."""
    commands = [
        ("MAIL FROM:<camille.martin@eurometropole.example>", "RCPT TO:<forum@forum.test>"),
        ("MAIL FROM:<camille.martin@eurometropole.example> BODY=8BITMIME", "RCPT TO:<Forum@Forum.Test>  "),
        ('MAIL FROM:<"camille martin"@eurometropole.example>', "RCPT TO:<forum@forum.test> (the list)"),
        ("MAIL FROM:<o'brien+tag@eurometropole.example>\tSIZE=900", "RCPT TO:<forum-bounces+a=b.example@forum.test>"),
    ]
    with smtplib.SMTP("127.0.0.1", listener.smtp_port, timeout=10) as client:
        client.ehlo("client.test")
        for mail, rcpt in commands:
            assert client.docmd(mail)[0] == 250, mail
            assert client.docmd(rcpt)[0] == 250, rcpt
            assert client.docmd("DATA")[0] == 354
            client.send(make_mail().replace(b"\r\n.", b"\r\n..") + b".\r\n")
            assert client.getreply()[0] == 250
        assert client.docmd("MAIL FROM:<@eurometropole.example>")[0] == 553
    rows = _spool(session_factory)
    assert [(r.envelope_from, r.envelope_to) for r in rows] == [
        (AUTHOR, [LIST]),
        (AUTHOR, ["Forum@Forum.Test"]),
        ('"camille martin"@eurometropole.example', [LIST]),
        ("o'brien+tag@eurometropole.example", ["forum-bounces+a=b.example@forum.test"]),
    ]
    assert all(r.raw == make_mail() for r in rows)


def test_oversize_refused_at_mail_and_during_data(
    listener: GatewayService, session_factory: sessionmaker[Session]
) -> None:
    big = make_mail(body="x" * 70 + "\n") + (b"y" * 70 + b"\r\n") * 3000
    with smtplib.SMTP("127.0.0.1", listener.smtp_port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail(AUTHOR, [LIST], big)
        assert refused.value.smtp_code == 552
    # A client that does not announce SIZE: refused once the data passes the limit.
    with smtplib.SMTP("127.0.0.1", listener.smtp_port, timeout=10) as client:
        client.ehlo("client.test")
        client.mail(AUTHOR)
        client.rcpt(LIST)
        code, reply = client.data(big)
        assert code == 552, reply
    assert _spool(session_factory) == []
    # Just below the limit: accepted.
    fits = make_mail() + (b"z" * 70 + b"\r\n") * 2500
    assert send(listener.smtp_port, fits).startswith("2.0.0 queued")


def _raw_session(port: int, lines: list[bytes]) -> list[bytes]:
    """Talk SMTP by hand (what smtplib refuses to send): one reply read after each line (a DATA body is one
    line ending in CRLF.CRLF); returns the greeting and every reply (last line of multi-line ones)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        fh = sock.makefile("rwb")
        replies = [fh.readline()]
        for line in lines:
            fh.write(line)
            fh.flush()
            reply = fh.readline()
            while reply[3:4] == b"-":
                reply = fh.readline()
            replies.append(reply)
        return replies


def test_garbage_input_is_answered_and_nothing_half_stored(
    listener: GatewayService, session_factory: sessionmaker[Session]
) -> None:
    port = listener.smtp_port
    # Binary junk instead of commands.
    junk = bytes(b for b in random.Random(7).randbytes(400) if b not in b"\r\n")[:200]
    replies = _raw_session(port, [junk + b"\r\n", b"QUIT\r\n"])
    assert replies[1][:1] == b"5" and replies[2].startswith(b"221"), replies
    # A line longer than smtp.max_line_length in DATA: refused (500), nothing stored.
    huge_line = b"Subject: x\r\n\r\n" + b"a" * 70_000 + b"\r\n.\r\n"
    replies = _raw_session(port, [b"EHLO c\r\n", b"MAIL FROM:<a@b.example>\r\n", f"RCPT TO:<{LIST}>\r\n".encode(),
                                  b"DATA\r\n", huge_line, b"QUIT\r\n"])
    assert replies[4].startswith(b"354") and replies[5].startswith(b"500 Line too long"), replies
    assert _spool(session_factory) == []
    # Empty data.
    replies = _raw_session(port, [b"EHLO c\r\n", b"MAIL FROM:<a@b.example>\r\n", f"RCPT TO:<{LIST}>\r\n".encode(),
                                  b"DATA\r\n", b"\r\n.\r\n", b"QUIT\r\n"])
    assert replies[5].startswith(b"554"), replies
    # DATA without a recipient.
    replies = _raw_session(port, [b"EHLO c\r\n", b"MAIL FROM:<a@b.example>\r\n", b"DATA\r\n", b"QUIT\r\n"])
    assert replies[3].startswith(b"503"), replies
    # MAIL FROM with garbage.
    replies = _raw_session(port, [b"EHLO c\r\n", b"MAIL FROM:<\xff\xfe@@>\r\n", b"QUIT\r\n"])
    assert replies[2][:1] == b"5", replies
    assert _spool(session_factory) == []


def test_no_headers_8bit_without_smtputf8_and_long_lines_are_kept_as_received(
    listener: GatewayService, session_factory: sessionmaker[Session]
) -> None:
    port = listener.smtp_port
    no_headers = b"just some text, no header at all\r\nsecond line\r\n"
    eight_bit = "From: Zoë Müller <zoe@example.org>\r\nSubject: Grüße aus Straßburg\r\n\r\nDéjà vu\r\n"
    eight_bit_raw = eight_bit.encode("latin-1")
    long_line = b"From: a@example.org\r\nSubject: long\r\n\r\n" + b"w" * 5000 + b"\r\n"
    for raw in (no_headers, eight_bit_raw, long_line):
        # smtplib sends bytes as they are, without SMTPUTF8 or 8BITMIME: what broken clients do.
        send(port, raw, mail_from="zoe@example.org")
    rows = _spool(session_factory)
    assert [r.raw for r in rows] == [no_headers, eight_bit_raw, long_line]


@pytest.mark.slow
def test_thirty_megabytes_accepted_below_a_raised_limit(
    fast_settings: Settings, session_factory: sessionmaker[Session], forum: Forum
) -> None:
    import base64

    settings = fast_settings.with_overrides({"lists": {"max_message_bytes": 32 * 1024 * 1024}})
    attachment = base64.encodebytes(bytes(range(256)) * (22 * 1024 * 1024 // 256)).replace(b"\n", b"\r\n")
    raw = (
        b"From: Camille Martin <camille.martin@eurometropole.example>\r\nTo: forum@forum.test\r\n"
        b"Subject: Plans du pont\r\nMessage-ID: <big@eurometropole.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
        b"Voici les plans.\r\n"
        b'--b\r\nContent-Type: application/pdf; name="plans.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + attachment + b"--b--\r\n"
    )
    assert 29 * 1024 * 1024 < len(raw) < 32 * 1024 * 1024
    with GatewayService(settings, session_factory, worker=False, delivery=False) as svc:
        assert send(svc.smtp_port, raw).startswith("2.0.0 queued")
    [row] = _spool(session_factory)
    assert row.raw == raw and row.size == len(raw)
