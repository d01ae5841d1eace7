"""The demo forum (passerelle.demo) shows the sheets feature: a published Obstacle/Solution sheet and a
published Good practice sheet, made from demo topics the way a moderator makes them, listed for a reader
who is not signed in (the obstacle sheet in full: its topic's category is public)."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from passerelle.config import Settings
from passerelle.demo import SHEETS, load_demo
from passerelle.models import ModerationAction, Sheet, SheetVersion
from tests.web.conftest import NOW


def test_demo_has_published_sheets(client: FlaskClient, settings: Settings, session_factory: sessionmaker[Session],
                                   db: Session) -> None:
    with session_factory() as session:
        summary = load_demo(session, settings, factory=session_factory, now=NOW)
        session.commit()
    assert summary.endswith("2 published sheets")
    sheets = list(db.scalars(select(Sheet).order_by(Sheet.id)))
    assert [(s.kind, s.status, s.version) for s in sheets] == [("obstacle", "published", 2),
                                                                ("practice", "published", 2)]
    obstacle, practice = sheets
    assert obstacle.title == SHEETS[0].title and practice.title == SHEETS[1].title
    # Pre-filled from the topic, then completed: the answer quoted, not the author's thanks nor signatures.
    assert obstacle.data["solution"].startswith("— Claire Dubois, Mission Opérationnelle Transfrontalière")
    assert "Merci Claire" not in obstacle.data["solution"] and "Jordi Puig\nGECT" not in obstacle.data["obstacle"]
    assert obstacle.data["border"] == "ES-FR" and obstacle.data["level"] == "regional"
    assert obstacle.data["solution_status"] == "found" and obstacle.data["category"] == "Santé"
    assert practice.data["border"] == "BE-FR" and "Interreg à 60 %" in practice.data["solution"]
    assert all(s.published_at is not None and s.published_at <= NOW for s in sheets)
    assert len(db.scalars(select(SheetVersion)).all()) == 4
    actions = db.scalars(select(ModerationAction.action).where(ModerationAction.action.like("sheet%"))).all()
    assert sorted(actions) == ["sheet", "sheet", "sheet-edit", "sheet-edit", "sheet-publish", "sheet-publish"]

    # A reader who is not signed in sees both in the list, and reads the obstacle sheet in full.
    listing = client.get("/sheets").get_data(as_text=True)
    assert "Soins programmés à l&#39;Hospital de la Cerdanya" in listing or "Soins programmés à l'Hospital" in listing
    assert "frontaliers franco-belges" in listing
    page = client.get(f"/sheets/{obstacle.id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "CPAM des Pyrénées-Orientales" in text and "883/2004" in text
