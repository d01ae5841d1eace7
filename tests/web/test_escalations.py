"""The register of escalated obstacles on the web: escalating from the topic page, following up, who sees
what (notes only for readers of the topic), exports, garbage in every field."""

from __future__ import annotations

import csv
import io
import json

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from passerelle.models import Escalation, EscalationNote, ModerationAction, Topic
from tests.web.conftest import Forum, csrf, sign_in


def english(client: FlaskClient) -> None:
    with client.session_transaction() as sess:
        sess["lang"] = "en"


def escalate(client: FlaskClient, forum: Forum, topic_id: int, level: str = "national",
             note: str = "Saisine du ministère, dossier confidentiel Xavier.") -> int:
    sign_in(client, forum.moderator_id)
    r = client.post("/escalations/new", data={"topic": topic_id, "level": level, "note": note,
                                               "csrf_token": csrf(client)})
    assert r.status_code == 303, r.get_data(as_text=True)
    return int(r.headers["Location"].rsplit("/", 1)[1])


def test_escalate_follow_up_and_resolve(client: FlaskClient, forum: Forum, db: Session) -> None:
    english(client)
    esc_id = escalate(client, forum, forum.private_topic_id)
    page = client.get(f"/escalations/{esc_id}").get_data(as_text=True)
    assert "The topic is escalated to the national level" in page and "Saisine du ministère" in page
    db.rollback()
    assert db.get(Topic, forum.private_topic_id).escalation_level == "national"  # type: ignore[union-attr]
    db.rollback()
    # Again at the same level: the note is added, no second entry.
    escalate(client, forum, forum.private_topic_id, note="Relance.")
    r = client.post(f"/escalations/{esc_id}", data={"state": "acknowledged", "note": "Accusé de réception.",
                                                     "csrf_token": csrf(client)})
    assert r.status_code == 303
    page = client.get(f"/escalations/{esc_id}").get_data(as_text=True)
    assert "Escalation updated." in page and "Accusé de réception." in page and "Relance." in page
    r = client.post(f"/escalations/{esc_id}", data={"state": "resolved", "note": "", "csrf_token": csrf(client)})
    assert r.status_code == 303
    db.rollback()
    assert db.scalar(select(Escalation.state)) == "resolved"
    assert db.get(Topic, forum.private_topic_id).escalation_level is None  # type: ignore[union-attr]
    assert [n.text for n in db.scalars(select(EscalationNote).order_by(EscalationNote.id))] == [
        "Relance.", "Accusé de réception."]
    actions = db.scalars(select(ModerationAction.action).order_by(ModerationAction.id)).all()
    assert actions == ["escalate", "escalate", "escalation-state", "escalation-state"]
    db.rollback()
    r = client.post(f"/escalations/{esc_id}", data={"state": "resolved", "csrf_token": csrf(client)})
    assert "Nothing changed." in client.get(r.headers["Location"]).get_data(as_text=True)


def test_register_visibility(client: FlaskClient, forum: Forum) -> None:
    private_id = escalate(client, forum, forum.private_topic_id)
    public_id = escalate(client, forum, forum.public_topic_id, level="european", note="Note publique.")
    client.delete_cookie("passerelle_session")
    english(client)
    # Titles, levels and states are public like the titles; notes of titles-only topics are not.
    page = client.get("/escalations").get_data(as_text=True)
    assert "Remboursement des soins transfrontaliers" in page and "Fiscalité des frontaliers" in page
    assert "Xavier" not in page
    detail = client.get(f"/escalations/{private_id}").get_data(as_text=True)
    assert "National level" in detail and "Xavier" not in detail and "for members" in detail
    assert "Note publique." in client.get(f"/escalations/{public_id}").get_data(as_text=True)
    data = json.loads(client.get("/escalations.json").get_data(as_text=True))
    by_topic = {e["topic_id"]: e for e in data["escalations"]}
    assert data["count"] == 2 and "notes" not in by_topic[forum.private_topic_id]
    assert by_topic[forum.public_topic_id]["note"] == "Note publique."
    text = client.get("/escalations.csv").data.decode("utf-8-sig")
    assert "Xavier" not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["level"] for r in rows} == {"national", "european"}
    # No moderator form for readers; the topic page says where its escalation stands.
    assert "Follow up" not in detail
    topic_page = client.get(f"/t/{forum.private_topic_id}").get_data(as_text=True)
    assert "Escalation:" in topic_page and "National level" in topic_page and "Escalated" in topic_page
    assert "Xavier" not in topic_page

    sign_in(client, forum.member_id)
    assert "Xavier" in client.get(f"/escalations/{private_id}").get_data(as_text=True)
    data = json.loads(client.get("/escalations.json").get_data(as_text=True))
    assert all("notes" in e for e in data["escalations"])
    assert "Follow up" not in client.get(f"/escalations/{private_id}").get_data(as_text=True)


def test_register_filters(client: FlaskClient, forum: Forum) -> None:
    escalate(client, forum, forum.private_topic_id)
    eu = escalate(client, forum, forum.public_topic_id, level="european")
    client.post(f"/escalations/{eu}", data={"state": "withdrawn", "csrf_token": csrf(client)})
    data = json.loads(client.get("/escalations.json?state=open").get_data(as_text=True))
    assert [e["level"] for e in data["escalations"]] == ["national"]
    data = json.loads(client.get("/escalations.json?level=european").get_data(as_text=True))
    assert [e["state"] for e in data["escalations"]] == ["withdrawn"]
    for query in ("state=lost", "level=galactic", "state=%00", "level=" + "x" * 500):
        assert client.get(f"/escalations?{query}").status_code == 400, query
        assert client.get(f"/escalations.csv?{query}").status_code == 400, query


@pytest.mark.parametrize(("data", "status"), [
    ({"topic": "abc", "level": "national"}, 400),
    ({"topic": "", "level": "national"}, 400),
    ({"topic": "9" * 30, "level": "national"}, 400),
    ({"topic": "999999", "level": "national"}, 404),
    ({"level": "galactic"}, 400),
    ({"level": ""}, 400),
    ({"level": "national", "note": "x" * 5001}, 400),
    ({"level": "national", "note": "bell\x07"}, 400),
])
def test_garbage_when_escalating(client: FlaskClient, forum: Forum, db: Session, data: dict[str, str],
                                 status: int) -> None:
    sign_in(client, forum.moderator_id)
    form = {"topic": str(forum.public_topic_id), **data, "csrf_token": csrf(client)}
    assert client.post("/escalations/new", data=form).status_code == status
    db.rollback()
    assert db.scalar(select(Escalation)) is None


def test_garbage_when_following_up(client: FlaskClient, forum: Forum, db: Session) -> None:
    esc_id = escalate(client, forum, forum.public_topic_id)
    token = csrf(client)
    for data, status in (({"state": "lost"}, 400), ({"state": "resolved", "note": "n" * 5001}, 400),
                         ({"state": "resolved", "note": "esc\x1b"}, 400), ({"state": "resolved"}, 404)):
        path = f"/escalations/{esc_id}" if status != 404 else "/escalations/999999"
        assert client.post(path, data={**data, "csrf_token": token}).status_code == status, data
    assert client.post(f"/escalations/{esc_id}", data={"state": "resolved"}).status_code == 400  # no CSRF
    db.rollback()
    assert db.scalar(select(Escalation.state)) == "escalated"
    db.rollback()
    assert client.get("/escalations/999999").status_code == 404


def test_only_moderators_escalate(client: FlaskClient, forum: Forum, db: Session) -> None:
    esc_id = escalate(client, forum, forum.public_topic_id)
    sign_in(client, forum.member_id)
    token = csrf(client)
    assert client.post("/escalations/new", data={"topic": forum.public_topic_id, "level": "european",
                                                  "csrf_token": token}).status_code == 403
    assert client.post(f"/escalations/{esc_id}", data={"state": "resolved", "csrf_token": token}).status_code == 403
    client.delete_cookie("passerelle_session")
    token = csrf(client)
    r = client.post("/escalations/new", data={"topic": forum.public_topic_id, "level": "european",
                                               "csrf_token": token})
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    r = client.post(f"/escalations/{esc_id}", data={"state": "resolved", "csrf_token": token})
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    db.rollback()
    assert len(db.scalars(select(Escalation)).all()) == 1
    assert db.scalar(select(Escalation.state)) == "escalated"
    db.rollback()
