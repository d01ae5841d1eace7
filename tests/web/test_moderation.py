"""Moderators' pages: permissions, held queue decisions, categories, topics, members, organisations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from passerelle.models import (
    Category,
    CategoryFollow,
    HeldMessage,
    InboundMessage,
    Member,
    ModerationAction,
    Organisation,
    OutboxMessage,
    Subscription,
    Topic,
)
from tests.web.conftest import NOW, Forum, csrf, english_client, raw_mail, sign_in

PAGES = ("/moderation/", "/moderation/categories", "/moderation/members", "/moderation/organisations")


def hold(db: Session, forum: Forum, subject: str = "Question d'un non-membre", sender: str = "stranger@x.example",
         body: str = "Bonjour, je voudrais savoir...") -> HeldMessage:
    inbound = InboundMessage(
        received_at=NOW, source="smtp", envelope_from=sender, envelope_to=["forum@forum.test"], list_name="forum",
        message_id_header=f"held.{subject[:5]}@x.example", size=100,
        raw=raw_mail(message_id=f"held.{abs(hash(subject))}@x.example", subject=subject, body=body, sender=sender),
        status="held", attempts=1, reason="held: not a member",
    )
    db.add(inbound)
    db.flush()
    held = HeldMessage(
        inbound_id=inbound.id, list_id=forum.list_id, sender=sender, subject=subject, reason="not a member",
        token=f"{inbound.id:024x}", created_at=NOW, expires_at=NOW + timedelta(days=14),
    )
    db.add(held)
    db.commit()
    return held


@pytest.mark.parametrize("path", PAGES)
def test_pages_need_a_moderator(client: FlaskClient, forum: Forum, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    sign_in(client, forum.member_id)
    r = client.get(path)
    assert r.status_code == 403 and b"moderators" in r.data


@pytest.mark.parametrize("path", PAGES)
def test_pages_for_moderators_and_operators(client: FlaskClient, forum: Forum, path: str) -> None:
    sign_in(client, forum.moderator_id)
    assert client.get(path).status_code == 200
    sign_in(client, forum.operator_id)
    assert client.get(path).status_code == 200


def test_moderation_posts_need_a_moderator(member_client: FlaskClient, forum: Forum, db: Session) -> None:
    held = hold(db, forum)
    token = csrf(member_client)
    for path, data in (
        (f"/moderation/held/{held.id}", {"action": "approve"}),
        ("/moderation/categories", {"list": forum.list_id, "name": "X", "public_access": "full"}),
        (f"/moderation/categories/{forum.public_category_id}", {"name": "X", "public_access": "full"}),
        (f"/moderation/categories/{forum.public_category_id}/merge", {"target": forum.private_category_id}),
        (f"/moderation/topics/{forum.public_topic_id}", {"status": "closed"}),
        ("/moderation/members", {"list": forum.list_id, "email": "a@b.example"}),
        (f"/moderation/members/{forum.member_id}", {"name": "x"}),
        ("/moderation/organisations", {"name": "Org", "country": "FR"}),
    ):
        r = member_client.post(path, data={**data, "csrf_token": token})
        assert r.status_code == 403, path
    db.rollback()
    assert db.get(HeldMessage, held.id).decision is None
    assert db.get(Topic, forum.public_topic_id).status == "answered"


def test_held_queue_approve(moderator_client: FlaskClient, forum: Forum, db: Session) -> None:
    held = hold(db, forum)
    page = moderator_client.get("/moderation/").get_data(as_text=True)
    assert "Question d&#39;un non-membre" in page and "stranger@x.example" in page
    detail = moderator_client.get(f"/moderation/held/{held.id}").get_data(as_text=True)
    assert "je voudrais savoir" in detail
    r = moderator_client.post(f"/moderation/held/{held.id}",
                              data={"action": "approve", "csrf_token": csrf(moderator_client)})
    assert r.status_code == 303
    db.rollback()
    held = db.get(HeldMessage, held.id)
    assert held.decision == "approved" and held.decided_by_id == forum.moderator_id
    # The spool row goes back to the worker, which posts it.
    assert db.get(InboundMessage, held.inbound_id).status == "new"
    action = db.scalars(select(ModerationAction).where(ModerationAction.action == "approve")).one()
    assert action.via == "web"
    after = moderator_client.get("/moderation/").get_data(as_text=True)
    assert "is approved and will be posted" in after  # the gateway's sentence, in the reader's language
    assert "No message is waiting for a decision." in after


def test_held_queue_reject_and_discard(moderator_client: FlaskClient, forum: Forum, db: Session) -> None:
    rejected = hold(db, forum, subject="Pub")
    discarded = hold(db, forum, subject="Spam")
    token = csrf(moderator_client)
    moderator_client.post(f"/moderation/held/{rejected.id}", data={"action": "reject", "reason": "Hors sujet",
                                                                   "csrf_token": token})
    moderator_client.post(f"/moderation/held/{discarded.id}", data={"action": "discard", "csrf_token": token})
    db.rollback()
    assert db.get(HeldMessage, rejected.id).decision == "rejected"
    assert db.get(HeldMessage, discarded.id).decision == "discarded"
    notices = db.scalars(select(OutboxMessage).where(OutboxMessage.recipient == "stranger@x.example")).all()
    assert len(notices) == 1 and b"Hors sujet" in notices[0].payload
    assert moderator_client.post(f"/moderation/held/{rejected.id}",
                                 data={"action": "explode", "csrf_token": token}).status_code == 400
    assert moderator_client.get("/moderation/held/99999").status_code == 404


def test_create_rename_and_open_a_category(moderator_client: FlaskClient, forum: Forum, db: Session) -> None:
    token = csrf(moderator_client)
    r = moderator_client.post("/moderation/categories", data={
        "list": forum.list_id, "name": "Emploi & formation", "description": "Travail frontalier",
        "public_access": "titles", "csrf_token": token})
    assert r.status_code == 303
    db.rollback()
    cat = db.scalar(select(Category).where(Category.name == "Emploi & formation"))
    assert cat.slug == "emploi-formation" and cat.public_access == "titles"
    moderator_client.post(f"/moderation/categories/{cat.id}", data={
        "name": "Emploi", "description": "", "public_access": "full", "csrf_token": token})
    db.rollback()
    cat = db.get(Category, cat.id)
    assert (cat.name, cat.slug, cat.public_access) == ("Emploi", "emploi", "full")
    # Duplicate names, unknown access levels, empty names are refused.
    for data in ({"list": forum.list_id, "name": "Emploi", "public_access": "full"},
                 {"list": forum.list_id, "name": "", "public_access": "full"},
                 {"list": forum.list_id, "name": "Autre", "public_access": "everyone"},
                 {"list": "abc", "name": "Autre", "public_access": "full"},
                 {"list": forum.list_id, "name": "x" * 200, "public_access": "full"}):
        assert moderator_client.post("/moderation/categories", data={**data, "csrf_token": token}).status_code == 400
    assert moderator_client.post("/moderation/categories", data={
        "list": 999, "name": "Z", "public_access": "full", "csrf_token": token}).status_code == 404


def test_opening_a_category_opens_its_topics(moderator_client: FlaskClient, forum: Forum, app) -> None:
    anonymous = english_client(app)
    assert b"Xavier" not in anonymous.get(f"/t/{forum.private_topic_id}").data
    moderator_client.post(f"/moderation/categories/{forum.private_category_id}", data={
        "name": "Santé", "public_access": "full", "csrf_token": csrf(moderator_client)})
    assert b"Xavier" in anonymous.get(f"/t/{forum.private_topic_id}").data


def test_merge_categories_with_retagging(moderator_client: FlaskClient, forum: Forum, db: Session) -> None:
    db.add(CategoryFollow(member_id=forum.member_id, category_id=forum.private_category_id, mode="follow",
                          created_at=NOW))
    db.commit()
    r = moderator_client.post(f"/moderation/categories/{forum.private_category_id}/merge",
                              data={"target": forum.public_category_id, "csrf_token": csrf(moderator_client)})
    assert r.status_code == 303
    db.rollback()
    assert db.get(Category, forum.private_category_id) is None
    topic = db.get(Topic, forum.private_topic_id)
    assert topic.category_id == forum.public_category_id
    assert [t.name for t in topic.tags] == ["sante"]
    assert db.get(CategoryFollow, (forum.member_id, forum.public_category_id)).mode == "follow"
    assert moderator_client.post(f"/moderation/categories/{forum.public_category_id}/merge", data={
        "target": forum.public_category_id, "csrf_token": csrf(moderator_client)}).status_code == 400


def test_topic_status_category_and_tags(moderator_client: FlaskClient, forum: Forum, db: Session) -> None:
    assert moderator_client.get(f"/moderation/topics/{forum.public_topic_id}").status_code == 200
    assert b"Moderate this topic" in moderator_client.get(f"/t/{forum.public_topic_id}").data
    token = csrf(moderator_client)
    r = moderator_client.post(f"/moderation/topics/{forum.public_topic_id}", data={
        "status": "closed", "outcome": "solved", "category": forum.private_category_id,
        "tags": "Fiscalité, #Télétravail  impôts", "csrf_token": token})
    assert r.status_code == 303
    db.rollback()
    topic = db.get(Topic, forum.public_topic_id)
    assert (topic.status, topic.outcome, topic.category_id) == ("closed", "solved", forum.private_category_id)
    assert topic.closed_at == NOW
    assert sorted(t.name for t in topic.tags) == ["fiscalité", "impôts", "télétravail"]
    moderator_client.post(f"/moderation/topics/{forum.public_topic_id}", data={
        "status": "open", "outcome": "", "category": "", "tags": "", "csrf_token": token})
    db.rollback()
    topic = db.get(Topic, forum.public_topic_id)
    assert (topic.status, topic.outcome, topic.category_id, topic.tags) == ("open", None, None, [])
    for data in ({"status": "deleted"}, {"status": "closed", "outcome": "maybe"}, {"status": "open", "category": "x"},
                 {"status": "open", "category": "999"}):
        assert moderator_client.post(f"/moderation/topics/{forum.public_topic_id}",
                                     data={**data, "csrf_token": token}).status_code == 400


def test_members_and_organisations(moderator_client: FlaskClient, forum: Forum, db: Session) -> None:
    token = csrf(moderator_client)
    page = moderator_client.get("/moderation/members?q=strasbourg").get_data(as_text=True)
    assert "jean@strasbourg.eu" in page and "anna@kehl.de" not in page
    r = moderator_client.post("/moderation/organisations", data={
        "name": "Région Grand Est", "country": "fr", "kind": "region", "border": "lu-fr-de", "csrf_token": token})
    assert r.status_code == 303
    db.rollback()
    org = db.scalar(select(Organisation).where(Organisation.name == "Région Grand Est"))
    assert (org.country, org.border) == ("FR", "DE-FR-LU")
    r = moderator_client.post("/moderation/members", data={
        "list": forum.list_id, "email": "Nouveau@Region.example", "name": "Nouveau", "organisation": org.id,
        "role": "member", "csrf_token": token})
    assert r.status_code == 303
    db.rollback()
    member = db.scalar(select(Member).where(Member.email == "nouveau@region.example"))
    assert member.organisation_id == org.id
    sub = db.scalar(select(Subscription).where(Subscription.member_id == member.id))
    r = moderator_client.post(f"/moderation/members/{member.id}", data={
        "name": "Nouveau Nom", "organisation": "", f"role-{sub.id}": "moderator", f"status-{sub.id}": "active",
        f"mode-{sub.id}": "daily", "csrf_token": token})
    assert r.status_code == 303
    db.rollback()
    sub = db.get(Subscription, sub.id)
    assert (sub.role, sub.delivery_mode) == ("moderator", "daily")
    assert db.get(Member, member.id).organisation_id is None
    for data in ({"name": "X", "country": "France"}, {"name": "", "country": "FR"},
                 {"name": "Y", "country": "FR", "border": "DE/FR"}, {"name": "Région Grand Est", "country": "FR"}):
        assert moderator_client.post("/moderation/organisations", data={**data, "csrf_token": token}).status_code == 400
    for data in ({"list": forum.list_id, "email": "not-an-address"},
                 {"list": forum.list_id, "email": "a@b.example", "role": "king"},
                 {"list": forum.list_id, "email": "a@b.example", "organisation": "424242"}):
        assert moderator_client.post("/moderation/members", data={**data, "csrf_token": token}).status_code == 400
    assert moderator_client.get("/moderation/members/424242").status_code == 404
