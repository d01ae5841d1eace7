"""Gateway fixtures: a forum with members, a running GatewayService (real aiosmtpd on a free port, the
smtp_sink fixture as its relay), a stub DNS resolver, and small helpers to write and send mail."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import dns.resolver
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.service import GatewayService
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.models import InboundMessage
from tests.factories import make_list, make_member

DOMAIN = "forum.test"
LIST = f"forum@{DOMAIN}"
AUTHOR = "camille.martin@eurometropole.example"
READERS = ("hans.weber@landkreis.example", "giulia.rossi@regione.example", "ana.garcia@diputacion.example")
DIGEST_READER = "digest.reader@example.org"
NOMAIL_READER = "nomail.reader@example.org"


class _TXT:
    def __init__(self, text: str) -> None:
        self.strings = (text.encode(),)


class StubResolver:
    """A dnspython-like resolver answering TXT queries from a dict; everything else is NXDOMAIN."""

    def __init__(self, records: dict[str, list[str]] | None = None) -> None:
        self.records = dict(records or {})
        self.queries: list[str] = []

    def resolve(self, name: str, rdtype: str = "A", **_: Any) -> list[_TXT]:
        self.queries.append(name)
        name = name.rstrip(".").lower()
        if rdtype != "TXT" or name not in self.records:
            raise dns.resolver.NXDOMAIN()
        return [_TXT(t) for t in self.records[name]]


def make_mail(
    *,
    subject: str = "Travailleurs frontaliers : double imposition",
    sender: str = AUTHOR,
    sender_name: str = "Camille Martin",
    to: str = LIST,
    message_id: str | None = "m1@eurometropole.example",
    in_reply_to: str | None = None,
    references: str | None = None,
    body: str = "Bonjour,\n\nUn travailleur frontalier est imposé deux fois. Que faire ?\n\nCamille\n",
    extra_headers: tuple[tuple[str, str], ...] = (),
    date: datetime | None = None,
) -> bytes:
    lines = [
        f"From: {sender_name} <{sender}>" if sender_name else f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {format_datetime(date or datetime(2026, 11, 2, 10, 0, tzinfo=UTC))}",
    ]
    if message_id:
        lines.append(f"Message-ID: <{message_id}>")
    if in_reply_to:
        lines.append(f"In-Reply-To: <{in_reply_to}>")
    if references:
        lines.append(f"References: {references}")
    lines += [f"{k}: {v}" for k, v in extra_headers]
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode("utf-8")


def send(port: int, raw: bytes, *, mail_from: str = AUTHOR, rcpt: tuple[str, ...] = (LIST,)) -> str:
    """Send through the gateway with smtplib; returns the DATA reply text (raises on refusal)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail(mail_from)
        for address in rcpt:
            code, reply = client.rcpt(address)
            if code >= 400:
                raise smtplib.SMTPRecipientsRefused({address: (code, reply)})
        code, reply = client.data(raw)
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
        return reply.decode()


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def spool_statuses(factory: sessionmaker[Session]) -> list[tuple[int, str, str]]:
    with session_scope(factory) as session:
        return [tuple(r) for r in session.execute(
            select(InboundMessage.id, InboundMessage.status, InboundMessage.reason).order_by(InboundMessage.id)
        )]


def wait_processed(factory: sessionmaker[Session], count: int, timeout: float = 10.0) -> list[tuple[int, str, str]]:
    def done() -> list[tuple[int, str, str]] | None:
        rows = spool_statuses(factory)
        finished = [r for r in rows if r[1] not in ("new", "processing")]
        return rows if len(finished) >= count else None

    return wait_until(done, timeout, f"{count} processed spool rows")


@dataclass
class Forum:
    list_id: int
    author: str = AUTHOR
    readers: tuple[str, ...] = READERS
    moderator: str = "moderation@eurometropole.example"


@pytest.fixture
def forum(session_factory: sessionmaker[Session]) -> Forum:
    """The list "forum" with an author, three instant readers, a digest reader, a no-mail reader and a moderator."""
    with session_scope(session_factory) as session:
        ml = make_list(session, "forum", title="Forum transfrontalier")
        make_member(session, AUTHOR, name="Camille Martin", mailing_list=ml)
        for address in READERS:
            make_member(session, address, mailing_list=ml)
        make_member(session, DIGEST_READER, mailing_list=ml, mode="daily")
        make_member(session, NOMAIL_READER, mailing_list=ml, mode="nomail")
        make_member(session, "moderation@eurometropole.example", mailing_list=ml, role="moderator", mode="nomail")
        return Forum(list_id=ml.id)


@pytest.fixture
def resolver() -> StubResolver:
    return StubResolver()


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    return settings.with_overrides({"worker": {"poll_interval": 0.05}})


@pytest.fixture
def service(
    fast_settings: Settings, session_factory: sessionmaker[Session], forum: Forum, resolver: StubResolver
) -> Iterator[GatewayService]:
    svc = GatewayService(fast_settings, session_factory, resolver=resolver)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()
