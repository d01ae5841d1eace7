"""Fixtures of the web archive tests: an app on the test database, a small forum, signed-in clients."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from archive_web import create_app
from passerelle import search
from passerelle.config import Settings
from passerelle.db import make_engine
from passerelle.mail.quotes import split_reply
from passerelle.models import (
    Attachment,
    Category,
    InboundMessage,
    MailingList,
    Member,
    Message,
    Tag,
    Topic,
)
from tests.factories import make_category, make_list, make_member, make_org

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class Clock:
    """A clock tests can move."""

    def __init__(self, value: datetime = NOW) -> None:
        self.value = value

    def __call__(self) -> datetime:
        return self.value

    def advance(self, **delta: float) -> None:
        self.value += timedelta(**delta)


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    """The arranging/checking session of web tests: on SQLite its transactions begin deferred, so that a
    test reading something never holds the write lock a request then waits for. After a request that
    writes, ``db.rollback()`` before reading (a transaction keeps the snapshot it started with; objects are
    expired by the rollback, or by the commit that ended the previous transaction)."""
    # expire_on_commit: objects read before a request are read again after it, never served stale.
    if engine.dialect.name == "sqlite":
        reader = make_engine(engine.url.render_as_string(hide_password=False), sqlite_immediate=False)
        session = sessionmaker(bind=reader, expire_on_commit=True)()
    else:
        reader = None
        session = sessionmaker(bind=engine, expire_on_commit=True)()
    try:
        yield session
    finally:
        session.rollback()
        session.close()
        if reader is not None:
            reader.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(settings: Settings, session_factory: sessionmaker[Session], clock: Clock) -> Iterator[Flask]:
    app = create_app(settings, session_factory=session_factory, clock=clock)
    app.config["TESTING"] = True
    yield app
    app.extensions["passerelle"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser that asks for English pages (the site default is French; tests/web/test_i18n.py covers it)."""
    return english_client(app)


def english_client(app: Flask) -> FlaskClient:
    test_client = app.test_client()
    test_client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return test_client


def raw_mail(*, message_id: str, subject: str, body: str, sender: str = "jean@strasbourg.eu") -> bytes:
    return (
        f"From: {sender}\r\nTo: forum@forum.test\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n"
        f"Date: Mon, 02 Nov 2026 09:00:00 +0100\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


@dataclass
class Forum:
    """The test forum: ids of what each test needs (objects are re-read through each request's session)."""

    list_id: int
    public_category_id: int
    private_category_id: int
    public_topic_id: int
    private_topic_id: int
    public_message_pk: int
    private_message_pk: int
    private_reply_pk: int
    public_attachment_id: int
    private_attachment_id: int
    member_id: int
    moderator_id: int
    operator_id: int
    outsider_id: int
    org_id: int


def add_topic(
    db: Session,
    ml: MailingList,
    category: Category | None,
    subject: str,
    posts: list[tuple[Member, str]],
    *,
    start: datetime,
    status: str = "open",
    tags: list[Tag] | None = None,
    with_raw: bool = True,
) -> tuple[Topic, list[Message]]:
    topic = Topic(
        list_id=ml.id, category_id=category.id if category else None, subject=subject,
        normalized_subject=subject.lower(), status=status, author_id=posts[0][0].id, created_at=start,
        last_post_at=start + timedelta(hours=len(posts) - 1), message_count=len(posts),
    )
    topic.tags = tags or []
    db.add(topic)
    db.flush()
    messages = []
    parent = None
    for i, (author, body) in enumerate(posts):
        mid = f"t{topic.id}.{i}@test.example"
        msg_subject = subject if i == 0 else f"Re: {subject}"
        inbound_id = None
        if with_raw:
            inbound = InboundMessage(
                received_at=start, source="smtp", envelope_from=author.email, envelope_to=["forum@forum.test"],
                list_name=ml.name, message_id_header=mid, size=0,
                raw=raw_mail(message_id=mid, subject=msg_subject, body=body, sender=author.email),
                status="done", attempts=1, reason="",
            )
            db.add(inbound)
            db.flush()
            inbound_id = inbound.id
        msg = Message(
            topic_id=topic.id, parent_id=parent.id if parent else None, message_id=mid,
            in_reply_to=parent.message_id if parent else "", references=parent.message_id if parent else "",
            author_id=author.id, from_name=author.name, from_addr=author.email, subject=msg_subject,
            date=start + timedelta(hours=i), received_at=start + timedelta(hours=i), body_text=body,
            new_text=split_reply(body).new_text, inbound_id=inbound_id, source="smtp",
        )
        db.add(msg)
        db.flush()
        search.index_message(db, msg)
        messages.append(msg)
        parent = msg
    return topic, messages


def add_attachment(db: Session, msg: Message, filename: str, content_type: str, data: bytes, **kw: Any) -> Attachment:
    import hashlib

    att = Attachment(
        message_pk=msg.id, filename=filename, content_type=content_type, size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), data=data, **kw,
    )
    db.add(att)
    db.flush()
    return att


@pytest.fixture
def forum(db: Session) -> Forum:
    ml = make_list(db)
    ml.title = "Forum transfrontalier"
    org = make_org(db, "Eurométropole de Strasbourg", "FR", border="DE-FR")
    org_de = make_org(db, "Stadt Kehl", "DE", border="DE-FR")
    member, _ = make_member(db, "jean@strasbourg.eu", name="Jean Dupont", mailing_list=ml, org=org)
    other, _ = make_member(db, "anna@kehl.de", name="Anna Müller", mailing_list=ml, org=org_de, language="de")
    moderator, _ = make_member(db, "mod@mot.example", name="Modératrice", mailing_list=ml, role="moderator")
    operator, _ = make_member(db, "ops@mot.example", name="Opérateur")
    operator.is_operator = True
    outsider, _ = make_member(db, "ex@gone.example", name="Ancien membre", mailing_list=ml, status="unsubscribed")
    public = make_category(db, ml, "Fiscalité", public_access="full")
    private = make_category(db, ml, "Santé", public_access="titles")
    tag = Tag(list_id=ml.id, name="teletravail")
    db.add(tag)
    db.flush()
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    pub_topic, pub_msgs = add_topic(
        db, ml, public, "Fiscalité des frontaliers en télétravail",
        [
            (member, "Bonjour,\nComment est imposé le télétravail des frontaliers ?\n"
                     "https://example.org/doc\n-- \nJean"),
            (other, "Guten Tag,\ndas Abkommen regelt die Besteuerung.\n\n"
                    "Le 2 nov. 2026, Jean a écrit :\n> Bonjour,\n> Comment est imposé"),
        ],
        start=start, status="answered", tags=[tag],
    )
    priv_topic, priv_msgs = add_topic(
        db, ml, private, "Remboursement des soins transfrontaliers",
        [
            (other, "La caisse refuse le remboursement confidentiel du patient Xavier."),
            (member, "Réponse secrète: voir l'accord-cadre."),
        ],
        start=start + timedelta(days=1),
    )
    pub_att = add_attachment(db, pub_msgs[0], "note fiscale.pdf", "application/pdf", b"%PDF-1.4 test")
    priv_att = add_attachment(db, priv_msgs[0], "dossier.txt", "text/plain", b"secret medical file")
    db.commit()
    return Forum(
        list_id=ml.id, public_category_id=public.id, private_category_id=private.id,
        public_topic_id=pub_topic.id, private_topic_id=priv_topic.id, public_message_pk=pub_msgs[0].id,
        private_message_pk=priv_msgs[0].id, private_reply_pk=priv_msgs[1].id,
        public_attachment_id=pub_att.id, private_attachment_id=priv_att.id, member_id=member.id,
        moderator_id=moderator.id, operator_id=operator.id, outsider_id=outsider.id, org_id=org.id,
    )


def sign_in(client: FlaskClient, member_id: int, *, expires: datetime | None = None) -> None:
    """Put a signed-in session in the client's cookie (the link flow itself is tested in test_auth)."""
    with client.session_transaction() as sess:
        sess["mid"] = member_id
        sess["exp"] = (expires or NOW + timedelta(hours=12)).timestamp()


def csrf(client: FlaskClient) -> str:
    """The client's CSRF token (created in its session when missing)."""
    with client.session_transaction() as sess:
        if "csrf" not in sess:
            sess["csrf"] = "t" * 43
        return str(sess["csrf"])


@pytest.fixture
def member_client(client: FlaskClient, forum: Forum) -> FlaskClient:
    sign_in(client, forum.member_id)
    return client


@pytest.fixture
def moderator_client(client: FlaskClient, forum: Forum) -> FlaskClient:
    sign_in(client, forum.moderator_id)
    return client


@pytest.fixture
def operator_client(client: FlaskClient, forum: Forum) -> FlaskClient:
    sign_in(client, forum.operator_id)
    return client


__all__ = ["NOW", "Clock", "Forum", "add_attachment", "add_topic", "csrf", "english_client", "raw_mail", "sign_in"]
