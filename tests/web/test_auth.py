"""Sign-in by a one-time link sent by mail, session expiry, sign-out, CSRF."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from passerelle.models import LoginToken, OutboxMessage
from tests.web.conftest import Clock, Forum, csrf, english_client

LINK = re.compile(r"http://archive\.test/login/[A-Za-z0-9_-]+(?:\?next=\S+)?")


def ask_link(client: FlaskClient, email: str, next_path: str = "") -> int:
    data = {"email": email, "csrf_token": csrf(client)}
    if next_path:
        data["next"] = next_path
    return client.post("/login", data=data).status_code


def mailed_link(db: Session, to: str) -> str:
    db.rollback()
    row = db.scalars(
        select(OutboxMessage).where(OutboxMessage.recipient == to).order_by(OutboxMessage.id.desc())
    ).first()
    assert row is not None, "no sign-in mail queued"
    mail = message_from_bytes(row.payload, policy=policy.default)
    body = mail.get_content()
    match = LINK.search(body)
    assert match, body
    return match.group(0)


def test_sign_in_by_link(client: FlaskClient, forum: Forum, db: Session) -> None:
    assert ask_link(client, "Jean@Strasbourg.EU", "/t/1") == 200
    link = mailed_link(db, "jean@strasbourg.eu")
    row = db.scalars(select(OutboxMessage)).first()
    assert row.kind == "notice" and row.status == "pending"
    # Only the hash of the token is stored.
    token = link.split("/login/")[1].split("?")[0]
    assert db.scalar(select(LoginToken.token_hash)) != token and token not in db.scalar(select(LoginToken.token_hash))
    path = link.replace("http://archive.test", "")
    # GET shows a button and changes nothing (mail scanners fetch links).
    page = client.get(path)
    assert page.status_code == 200 and b"Sign in" in page.data
    assert client.get("/account").status_code == 302
    r = client.post(path.split("?")[0], data={"csrf_token": csrf(client), "next": "/t/1"})
    assert r.status_code == 303 and r.headers["Location"] == "/t/1"
    account = client.get("/account")
    assert account.status_code == 200 and b"jean@strasbourg.eu" in account.data
    # The link works once.
    client2 = english_client(client.application)
    assert client2.get(path).status_code == 400
    assert client2.post(path.split("?")[0], data={"csrf_token": csrf(client2)}).status_code == 400


def test_link_expires(client: FlaskClient, forum: Forum, db: Session, clock: Clock, settings) -> None:
    ask_link(client, "jean@strasbourg.eu")
    path = mailed_link(db, "jean@strasbourg.eu").replace("http://archive.test", "")
    clock.advance(minutes=settings.web.login_link_minutes + 1)
    r = client.get(path)
    assert r.status_code == 400 and b"expired" in r.data


def test_unknown_address_gets_the_same_answer(client: FlaskClient, forum: Forum, db: Session) -> None:
    known = client.post("/login", data={"email": "jean@strasbourg.eu", "csrf_token": csrf(client)})
    unknown = client.post("/login", data={"email": "nobody@nowhere.example", "csrf_token": csrf(client)})
    assert known.status_code == unknown.status_code == 200
    assert known.data.replace(b"jean@strasbourg.eu", b"X") == unknown.data.replace(b"nobody@nowhere.example", b"X")
    db.rollback()
    assert db.scalars(select(OutboxMessage.recipient)).all() == ["jean@strasbourg.eu"]


def test_links_are_not_sent_in_a_loop(client: FlaskClient, forum: Forum, db: Session, clock: Clock) -> None:
    for _ in range(5):
        ask_link(client, "jean@strasbourg.eu")
    db.rollback()
    assert len(db.scalars(select(OutboxMessage)).all()) == 1
    clock.advance(seconds=61)
    ask_link(client, "jean@strasbourg.eu")
    db.rollback()
    assert len(db.scalars(select(OutboxMessage)).all()) == 2


def test_invalid_addresses(client: FlaskClient, forum: Forum) -> None:
    for bad in ("", "not an address", "a@", "@b", "x" * 400 + "@a.example", "a@b@c", "<script>@x.y", "\x00@x.y"):
        r = client.post("/login", data={"email": bad, "csrf_token": csrf(client)})
        assert r.status_code == 400, bad
        assert b"not a valid mail address" in r.data
        assert b"<script>@" not in r.data


def test_session_expires(client: FlaskClient, forum: Forum, db: Session, clock: Clock, settings) -> None:
    ask_link(client, "jean@strasbourg.eu")
    path = mailed_link(db, "jean@strasbourg.eu").replace("http://archive.test", "")
    client.post(path, data={"csrf_token": csrf(client)})
    assert client.get("/account").status_code == 200
    clock.advance(hours=settings.web.session_hours - 1)
    assert client.get("/account").status_code == 200
    clock.advance(hours=2)
    r = client.get("/account")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert b"Xavier" not in client.get(f"/t/{forum.private_topic_id}").data


def test_sign_out(member_client: FlaskClient, forum: Forum) -> None:
    assert b"Xavier" in member_client.get(f"/t/{forum.private_topic_id}").data
    r = member_client.post("/logout", data={"csrf_token": csrf(member_client)})
    assert r.status_code == 303
    assert b"Xavier" not in member_client.get(f"/t/{forum.private_topic_id}").data


def test_sign_in_starts_a_fresh_session(client: FlaskClient, forum: Forum, db: Session) -> None:
    before = csrf(client)
    ask_link(client, "jean@strasbourg.eu")
    path = mailed_link(db, "jean@strasbourg.eu").replace("http://archive.test", "")
    client.post(path, data={"csrf_token": before})
    with client.session_transaction() as sess:
        assert sess.get("csrf") != before


def test_every_post_needs_the_csrf_token(member_client: FlaskClient, forum: Forum) -> None:
    for path, data in (
        ("/logout", {}),
        ("/login", {"email": "jean@strasbourg.eu"}),
        (f"/t/{forum.public_topic_id}/follow", {"mode": "follow"}),
        ("/account/delivery", {"subscription": "1", "mode": "daily"}),
        ("/account/unsubscribe-all", {}),
        ("/account/preferences", {"language": "fr", "timezone": "Europe/Paris"}),
    ):
        for token in (None, "", "wrong-token"):
            payload = dict(data)
            if token is not None:
                payload["csrf_token"] = token
            r = member_client.post(path, data=payload)
            assert r.status_code == 400, (path, token)
            assert b"This form has expired" in r.data


def test_safe_redirects_after_sign_in(client: FlaskClient, forum: Forum, db: Session) -> None:
    for evil in ("https://evil.example/", "//evil.example", "/\\evil.example", "javascript:alert(1)"):
        db.rollback()
        for row in db.scalars(select(LoginToken)):
            db.delete(row)
        db.commit()
        ask_link(client, "jean@strasbourg.eu", evil)
        path = mailed_link(db, "jean@strasbourg.eu").replace("http://archive.test", "").split("?")[0]
        r = client.post(path, data={"csrf_token": csrf(client), "next": evil})
        assert r.headers["Location"] == "/", evil


def test_garbage_tokens(client: FlaskClient, forum: Forum) -> None:
    for token in ("x", "A" * 300, "%00", "..%2F..", "<script>"):
        r = client.get(f"/login/{token}")
        assert r.status_code in (400, 404), token
        assert b"<script>" not in r.data
