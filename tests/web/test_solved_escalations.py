"""The web follows the mail's rule between "closed as solved" and escalation (passerelle.escalations):
closing a topic as solved from the moderation page marks its open escalations resolved, with a note in the
register; the escalation form refuses a topic closed as solved and says what to do."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from passerelle import escalations as esc
from passerelle.models import Escalation, EscalationNote, Topic
from tests.web.conftest import Forum, csrf


def close(client: FlaskClient, topic_id: int, outcome: str) -> str:
    r = client.post(f"/moderation/topics/{topic_id}", data={
        "status": "closed", "outcome": outcome, "category": "", "tags": "", "csrf_token": csrf(client)})
    assert r.status_code == 303
    return client.get(r.headers["Location"]).get_data(as_text=True)


def test_closing_as_solved_on_the_web_resolves_the_escalation(moderator_client: FlaskClient, forum: Forum,
                                                               db: Session) -> None:
    r = moderator_client.post("/escalations/new", data={"topic": forum.public_topic_id, "level": "national",
                                                        "note": "Saisine.", "csrf_token": csrf(moderator_client)})
    assert r.status_code == 303
    # Closed with another outcome, the obstacle still waits at the national level.
    close(moderator_client, forum.public_topic_id, "legal-impossibility")
    db.rollback()
    assert db.scalar(select(Escalation.state)) == "escalated"
    page = close(moderator_client, forum.public_topic_id, "solved")
    assert "its open escalations are marked resolved in the register" in page
    db.rollback()
    assert db.scalar(select(Escalation.state)) == "resolved"
    assert db.get(Topic, forum.public_topic_id).escalation_level is None  # type: ignore[union-attr]
    assert db.scalar(select(EscalationNote.text)) == esc.SOLVED_NOTE["fr"]  # in the list's language
    esc_id = db.scalar(select(Escalation.id))
    db.rollback()
    shown = moderator_client.get(f"/escalations/{esc_id}").get_data(as_text=True)
    assert esc.SOLVED_NOTE["fr"] in shown and "Resolved" in shown


def test_the_form_refuses_a_topic_closed_as_solved(moderator_client: FlaskClient, forum: Forum,
                                                    db: Session) -> None:
    close(moderator_client, forum.public_topic_id, "solved")
    r = moderator_client.post("/escalations/new", data={"topic": forum.public_topic_id, "level": "european",
                                                        "note": "", "csrf_token": csrf(moderator_client)})
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/t/{forum.public_topic_id}")
    page = moderator_client.get(r.headers["Location"]).get_data(as_text=True)
    assert "closed as solved, so it was not escalated" in page
    db.rollback()
    assert db.scalar(select(Escalation)) is None
