"""Real bounces through the real gateway: smtplib -> aiosmtpd -> spool -> worker -> bounce rule -> score.

The sisimai corpus bounces are re-addressed to our VERP return path (the address the copy that bounced was
sent from), as a remote MTA would send them back; a fake clock spaces them out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.bounce_score import reenable_delivery
from gateway.service import GatewayService
from gateway.worker import process_pending
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.mail.addresses import verp_encode
from passerelle.models import BounceEvent, InboundMessage, OutboxMessage, Subscription
from tests import corpus_dir
from tests.factories import make_list, make_member
from tests.gateway.conftest import send

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
BOUNCES = corpus_dir() / "sisimai-bounces" / "maildir" / "bsd"
MEMBER = "kijitora@example.co.jp"


@pytest.fixture
def bouncing(session_factory: sessionmaker[Session]) -> int:
    with session_scope(session_factory) as session:
        ml = make_list(session, "forum", title="Forum transfrontalier")
        make_member(session, "moderation@eurometropole.example", mailing_list=ml, role="moderator", language="fr")
        _, sub = make_member(session, MEMBER, mailing_list=ml, language="en")
        return sub.id


@pytest.fixture
def gateway(settings: Settings, session_factory: sessionmaker[Session], bouncing: int) -> Iterator[GatewayService]:
    # SMTP only: the worker runs in the test with the fake clock.
    svc = GatewayService(settings, session_factory, smtp=True, worker=False, delivery=False)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def _readdressed(name: str, settings: Settings, member: str, serial: int) -> tuple[bytes, str]:
    raw = (BOUNCES / name).read_bytes()
    to = str(message_from_bytes(raw, policy=policy.compat32).get("To", ""))
    sender = re.search(r"[\w.+-]+@[\w.-]+", to)
    assert sender, f"{name}: no To address"
    verp = verp_encode("forum-bounces", settings.lists.domain, member)
    raw = raw.replace(sender.group(0).encode(), verp.encode())
    # Each bounce is a distinct message (the corpus file is reused).
    raw = re.sub(rb"(?im)^Message-Id:\s*<([^>]*)>", lambda m: b"Message-Id: <%d.%s>" % (serial, m.group(1)), raw,
                 count=1)
    return raw, verp


def test_dead_address_is_disabled_through_the_gateway(gateway: GatewayService, settings: Settings,
                                                     session_factory: sessionmaker[Session], bouncing: int) -> None:
    for i in range(6):
        raw, verp = _readdressed("lhost-postfix-04.eml", settings, MEMBER, i)
        send(gateway.smtp_port, raw, mail_from="", rcpt=(verp,))
        assert process_pending(settings, session_factory, now=T0 + timedelta(minutes=10 * i)) == 1

    with session_scope(session_factory) as s:
        sub = s.get(Subscription, bouncing)
        assert sub.status == "disabled"
        events = s.scalars(select(BounceEvent).order_by(BounceEvent.id)).all()
        assert [(e.subscription_id, e.hard, e.status, e.reason) for e in events] == [
            (bouncing, True, "5.1.1", "userunknown")] * 6
        assert all(e.inbound_id for e in events)
        statuses = {r.status for r in s.scalars(select(InboundMessage))}
        assert statuses == {"bounce"}
        notices = sorted(o.recipient for o in s.scalars(select(OutboxMessage)))
        assert notices == [MEMBER, "moderation@eurometropole.example"]

        # The member re-enables (web account page or mail command call this).
        assert reenable_delivery(s, sub, T0 + timedelta(days=1)) is True


@pytest.mark.parametrize("name", [f"rfc3834-0{i}.eml" for i in range(1, 6)])
def test_auto_replies_to_the_verp_address_are_not_scored(gateway: GatewayService, settings: Settings,
                                                         session_factory: sessionmaker[Session], bouncing: int,
                                                         name: str) -> None:
    raw, verp = _readdressed(name, settings, MEMBER, 0)
    send(gateway.smtp_port, raw, mail_from="", rcpt=(verp,))
    assert process_pending(settings, session_factory, now=T0) == 1
    with session_scope(session_factory) as s:
        assert s.scalar(select(BounceEvent.id)) is None
        sub = s.get(Subscription, bouncing)
        assert (sub.status, sub.bounce_score) == ("active", 0.0)
        row = s.scalars(select(InboundMessage)).one()
        assert row.status not in ("bounce", "done"), (row.status, row.reason)
