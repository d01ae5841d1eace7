"""The account page, one-click unsubscribe (RFC 8058) and confirmation links."""

from __future__ import annotations

from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.delivery import unsubscribe_url
from passerelle import tokens
from passerelle.models import CategoryFollow, Member, PendingConfirmation, Subscription, TopicFollow
from tests.web.conftest import NOW, Forum, csrf, english_client


def subscription(db: Session, member_id: int) -> Subscription:
    db.rollback()
    return db.scalars(select(Subscription).where(Subscription.member_id == member_id)).one()


def test_account_requires_sign_in(client: FlaskClient, forum: Forum) -> None:
    r = client.get("/account")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=")


def test_account_page(member_client: FlaskClient, forum: Forum, db: Session) -> None:
    db.add(TopicFollow(member_id=forum.member_id, topic_id=forum.public_topic_id, mode="follow", created_at=NOW))
    db.add(CategoryFollow(member_id=forum.member_id, category_id=forum.private_category_id, mode="mute",
                          created_at=NOW))
    db.commit()
    page = member_client.get("/account").get_data(as_text=True)
    assert "jean@strasbourg.eu" in page
    assert "Fiscalité des frontaliers en télétravail" in page and "Following" in page
    assert "Santé" in page and "Muted" in page
    assert 'value="daily"' in page and "Unsubscribe from everything" in page


def test_delivery_mode(member_client: FlaskClient, forum: Forum, db: Session) -> None:
    sub = subscription(db, forum.member_id)
    r = member_client.post("/account/delivery", data={"subscription": sub.id, "mode": "weekly",
                                                      "csrf_token": csrf(member_client)})
    assert r.status_code == 303
    assert subscription(db, forum.member_id).delivery_mode == "weekly"
    assert member_client.post("/account/delivery", data={"subscription": sub.id, "mode": "hourly",
                                                         "csrf_token": csrf(member_client)}).status_code == 400
    # Someone else's subscription is not found.
    other = subscription(db, forum.moderator_id)
    assert member_client.post("/account/delivery", data={"subscription": other.id, "mode": "nomail",
                                                         "csrf_token": csrf(member_client)}).status_code == 404
    assert subscription(db, forum.moderator_id).delivery_mode == "instant"


def test_follow_from_account(member_client: FlaskClient, forum: Forum, db: Session) -> None:
    token = csrf(member_client)
    member_client.post("/account/follow", data={"kind": "category", "id": forum.public_category_id,
                                                "mode": "follow", "csrf_token": token})
    db.rollback()
    assert db.get(CategoryFollow, (forum.member_id, forum.public_category_id)).mode == "follow"
    member_client.post("/account/follow", data={"kind": "category", "id": forum.public_category_id,
                                                "mode": "none", "csrf_token": token})
    db.rollback()
    assert db.get(CategoryFollow, (forum.member_id, forum.public_category_id)) is None
    for bad in ({"kind": "planet", "id": "1", "mode": "follow"}, {"kind": "topic", "id": "x", "mode": "follow"},
                {"kind": "topic", "id": "99999", "mode": "follow"}, {"kind": "topic", "id": "1", "mode": "?"}):
        r = member_client.post("/account/follow", data={**bad, "csrf_token": token})
        assert r.status_code in (400, 404), bad


def test_preferences(member_client: FlaskClient, forum: Forum, db: Session) -> None:
    token = csrf(member_client)
    r = member_client.post("/account/preferences", data={"language": "de", "timezone": "Europe/Berlin",
                                                         "name": "Jean D.", "csrf_token": token})
    assert r.status_code == 303
    db.rollback()
    member = db.get(Member, forum.member_id)
    assert (member.language, member.timezone, member.name) == ("de", "Europe/Berlin", "Jean D.")
    for bad in ({"language": "xx", "timezone": "Europe/Paris"}, {"language": "fr", "timezone": "Mars/Olympus"},
                {"language": "fr", "timezone": "../../etc/passwd"}, {"language": "fr", "timezone": ""},
                {"language": "fr", "timezone": "Europe/Paris", "name": "a\x00b"}):
        assert member_client.post("/account/preferences", data={**bad, "csrf_token": token}).status_code == 400


def test_unsubscribe_everything_and_come_back(member_client: FlaskClient, forum: Forum, db: Session) -> None:
    token = csrf(member_client)
    r = member_client.post("/account/unsubscribe-all", data={"csrf_token": token})
    assert r.status_code == 303
    sub = subscription(db, forum.member_id)
    assert sub.status == "unsubscribed"
    # No longer a member: private topics are titles only again.
    assert b"Xavier" not in member_client.get(f"/t/{forum.private_topic_id}").data
    member_client.post("/account/resubscribe", data={"subscription": sub.id, "csrf_token": token})
    assert subscription(db, forum.member_id).status == "active"


def test_one_click_unsubscribe(client: FlaskClient, forum: Forum, db: Session, settings) -> None:
    url = unsubscribe_url(settings, "forum", "Jean@Strasbourg.eu")
    path = url.replace("http://archive.test", "")
    page = client.get(path)
    assert page.status_code == 200 and b"Unsubscribe" in page.data and b"jean@strasbourg.eu" in page.data
    assert subscription(db, forum.member_id).status == "active"
    # RFC 8058: the mail client POSTs "List-Unsubscribe=One-Click", with no cookie and no CSRF token.
    fresh = english_client(client.application)
    r = fresh.post(path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 200
    assert subscription(db, forum.member_id).status == "unsubscribed"
    assert fresh.post(path, data="List-Unsubscribe=One-Click",
                      content_type="application/x-www-form-urlencoded").status_code == 200


def test_unsubscribe_token_by_subscription_id(client: FlaskClient, forum: Forum, db: Session, settings) -> None:
    sub = subscription(db, forum.member_id)
    token = tokens.sign(settings, "unsubscribe", {"s": sub.id})
    assert client.post(f"/u/{token}").status_code == 200
    assert subscription(db, forum.member_id).status == "unsubscribed"


def test_bad_unsubscribe_tokens(client: FlaskClient, forum: Forum, settings) -> None:
    other_purpose = tokens.sign(settings, "digest-follow", {"s": 1})
    gone = tokens.sign(settings, "unsubscribe", {"list": "forum", "email": "nobody@x.example"})
    for token, code in (("garbage", 400), (other_purpose, 400), (gone, 404), ("a" * 500, 400)):
        assert client.get(f"/u/{token}").status_code == code
        assert client.post(f"/u/{token}").status_code == code


def test_confirm_subscription_link(client: FlaskClient, forum: Forum, db: Session) -> None:
    db.add(PendingConfirmation(token="0123456789abcdef01234567", kind="subscribe", email="new@member.example",
                               list_id=forum.list_id, payload={"name": "Nouvelle"}, created_at=NOW,
                               expires_at=NOW + timedelta(hours=72)))
    db.commit()
    page = client.get("/confirm/0123456789abcdef01234567")
    assert page.status_code == 200 and b"new@member.example" in page.data
    db.rollback()
    assert db.scalar(select(Member).where(Member.email == "new@member.example")) is None
    r = client.post("/confirm/0123456789abcdef01234567", data={"csrf_token": csrf(client)})
    assert r.status_code == 200
    db.rollback()
    member = db.scalar(select(Member).where(Member.email == "new@member.example"))
    assert member is not None
    again = client.post("/confirm/0123456789abcdef01234567", data={"csrf_token": csrf(client)})
    assert again.status_code == 400
    assert client.get("/confirm/nope").status_code == 400
    assert client.get("/confirm/" + "z" * 200).status_code == 404
