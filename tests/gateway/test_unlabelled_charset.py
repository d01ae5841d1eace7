"""Mail whose 8-bit text no header labels (the README's swaks example: a raw UTF-8 body, no MIME-Version or
Content-Type; or an old client's Latin-1): the copies declare what the archive decoded, text/plain in UTF-8,
8bit to a relay that announced 8BITMIME (RFC 6152), quoted-printable to one that did not. Real mail:
smtplib -> the gateway (aiosmtpd) -> worker -> outbox -> the relay (an aiosmtpd sink)."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.compose import CopyHeaders, post_copy_template
from gateway.service import GatewayService
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.models import Message
from tests.gateway.conftest import AUTHOR, LIST, READERS, make_mail, send
from tests.smtp_sink import SmtpSink

TEXT = "Bonjour à tous…\n\nLe guichet « frontaliers » ouvre en été : 4 000 demandes traitées.\n\nCamille\n"
HEAD = (
    f"From: Camille Martin <{AUTHOR}>\r\nTo: {LIST}\r\nSubject: Guichet commun\r\n"
    "Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <raw-1@eurometropole.example>\r\n"
)
INFO = CopyHeaders(list_name="forum", list_title="Forum", topic_id=1, message_id="raw-1@eurometropole.example",
                   unsubscribe_url="")


def _raw(body: bytes, extra: str = "") -> bytes:
    return (HEAD + extra).encode("ascii") + b"\r\n" + body


def _crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def _content(msg: EmailMessage) -> str:
    """The decoded text, with the line ends a mail program shows (the wire's CRLF as newlines)."""
    return msg.get_content().replace("\r\n", "\n")


def _copies(service: GatewayService, sink: SmtpSink, raw: bytes) -> list:
    send(service.smtp_port, raw)
    received = sink.wait_for(len(READERS))
    assert sorted(r.rcpt_tos[0] for r in received) == sorted(READERS)
    return received


def _archived(factory: sessionmaker[Session]) -> str:
    with session_scope(factory) as session:
        return session.scalar(select(Message.body_text)) or ""


@pytest.mark.parametrize(
    ("label", "body", "extra"),
    [
        ("utf-8, no MIME headers (swaks)", _crlf(TEXT).encode("utf-8"), ""),
        ("latin-1, no MIME headers", _crlf(TEXT.replace("…", "...")).encode("latin-1"), ""),
        ("utf-8 declared us-ascii", _crlf(TEXT).encode("utf-8"),
         "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"),
    ],
)
def test_unlabelled_8bit_text_reaches_members_as_utf8(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session],
    label: str, body: bytes, extra: str,
) -> None:
    expected = TEXT if "latin-1" not in label else TEXT.replace("…", "...")
    for item in _copies(service, smtp_sink, _raw(body, extra)):
        msg = message_from_bytes(item.data, policy=policy.default)
        assert msg["MIME-Version"] == "1.0" and len(msg.get_all("MIME-Version")) == 1, label
        assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8", label
        assert len(msg.get_all("Content-Type")) == 1, label
        assert msg["Content-Transfer-Encoding"] == "8bit", label
        # RFC 6152: 8-bit data to a relay that announced 8BITMIME is declared so.
        assert item.mail_options == ["BODY=8BITMIME"], label
        assert _content(msg) == expected, label
        # The list headers are still there, once.
        assert msg["List-Id"] == "Forum transfrontalier <forum.forum.test>"
        if label.startswith("utf-8, no MIME"):
            # The UTF-8 bytes are unchanged (a DKIM body hash over them still verifies).
            assert item.data.split(b"\r\n\r\n", 1)[1] == body
    # What the archive (and so the web pages and the digests) shows is that same text.
    assert _archived(session_factory).strip() == expected.strip()


def test_relay_without_8bitmime_gets_quoted_printable(
    service: GatewayService, smtp_sink: SmtpSink, session_factory: sessionmaker[Session]
) -> None:
    smtp_sink.handler.no_8bitmime = True
    for item in _copies(service, smtp_sink, _raw(_crlf(TEXT).encode("utf-8"))):
        assert item.data.isascii() and item.mail_options == []
        msg = message_from_bytes(item.data, policy=policy.default)
        assert msg["Content-Transfer-Encoding"] == "quoted-printable"
        assert msg.get_content_charset() == "utf-8" and msg["MIME-Version"] == "1.0"
        assert _content(msg) == TEXT


def test_labelled_8bit_mail_is_sent_as_received_with_body_8bitmime(
    service: GatewayService, smtp_sink: SmtpSink
) -> None:
    raw = make_mail()
    for item in _copies(service, smtp_sink, raw):
        assert item.data.split(b"\r\n\r\n", 1)[1] == raw.split(b"\r\n\r\n", 1)[1]
        msg = message_from_bytes(item.data, policy=policy.default)
        assert len(msg.get_all("Content-Type")) == 1 and msg.get_content_charset() == "utf-8"
        assert msg["Content-Transfer-Encoding"] == "8bit"
        assert item.mail_options == ["BODY=8BITMIME"]


def _copy(settings: Settings, raw: bytes, *, eight_bit: bool = True) -> bytes:
    template = post_copy_template(settings, raw, INFO, author_name="Camille Martin", author_addr=AUTHOR,
                                  rewrite_from=False)
    return template.render("http://archive.test/u/x", eight_bit=eight_bit)


def test_what_is_left_as_it_came(settings: Settings) -> None:
    ascii_only = _raw(b"Hello\r\n")
    multipart = _raw(
        b"--b\r\nContent-Type: text/plain\r\n\r\nCaf\xc3\xa9\r\n--b--\r\n",
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n',
    )
    labelled = _raw("Café\r\n".encode("iso-8859-1"),
                    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n")
    for raw in (ascii_only, multipart, labelled):
        for eight_bit in (True, False):
            copy = _copy(settings, raw, eight_bit=eight_bit)
            assert copy.split(b"\r\n\r\n", 1)[1] == raw.split(b"\r\n\r\n", 1)[1]
            assert b"charset=utf-8" not in copy


def test_flowed_text_and_long_lines(settings: Settings) -> None:
    flowed = _raw("Une ligne coupée \r\nqui continue.\r\n".encode("cp1252"),
                  "Content-Type: text/plain; format=flowed; delsp=yes\r\n")
    msg = message_from_bytes(_copy(settings, flowed), policy=policy.default)
    assert msg.get_content_charset() == "utf-8"
    assert msg.get_param("format") == "flowed" and msg.get_param("delsp") == "yes"
    assert _content(msg) == "Une ligne coupée \nqui continue.\n"
    # A line longer than 8bit data allows (RFC 5322 2.1.1: 998 octets) goes quoted-printable in both forms.
    long_line = ("é" * 600 + "\r\n").encode("utf-8")
    for eight_bit in (True, False):
        copy = _copy(settings, _raw(long_line), eight_bit=eight_bit)
        msg = message_from_bytes(copy, policy=policy.default)
        assert copy.isascii() and msg["Content-Transfer-Encoding"] == "quoted-printable"
        assert _content(msg) == "é" * 600 + "\n"


def test_quoted_printable_8bit_declared_us_ascii(settings: Settings) -> None:
    raw = _raw(b"Caf=C3=A9 cr=C3=A8me\r\n",
               "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
               "Content-Transfer-Encoding: quoted-printable\r\n")
    for eight_bit in (True, False):
        msg = message_from_bytes(_copy(settings, raw, eight_bit=eight_bit), policy=policy.default)
        assert msg.get_content_charset() == "utf-8" and len(msg.get_all("Content-Transfer-Encoding")) == 1
        assert _content(msg) == "Café crème\n"
