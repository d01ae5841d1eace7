"""Hostile input on the sheet, escalation and overview pages: XSS payloads in every text that reaches them,
random garbage in every form field and URL (a clear 400/403/404 page or a redirect, never a 500)."""

from __future__ import annotations

import random

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import sheets as sheet_core
from passerelle import escalations as esc_core
from passerelle.config import Settings
from passerelle.models import Category, Member, Organisation, Sheet, Topic
from tests.web.conftest import NOW, Forum, csrf, sign_in
from tests.web.test_security import GARBAGE_VALUES, PAYLOADS, assert_inert

HOSTILE = " ".join(PAYLOADS)


@pytest.fixture
def hostile(forum: Forum, db: Session, settings: Settings) -> tuple[int, int]:
    """A published sheet and an escalation whose every text is an XSS payload, on a public topic."""
    topic = db.get(Topic, forum.public_topic_id)
    mod = db.get(Member, forum.moderator_id)
    assert topic is not None and mod is not None
    topic.subject = f"Sujet {HOSTILE}"
    db.get(Category, forum.public_category_id).name = f"Cat {HOSTILE}"[:120]  # type: ignore[union-attr]
    db.get(Organisation, forum.org_id).name = f"Org {HOSTILE}"[:200]  # type: ignore[union-attr]
    db.flush()
    sheet = sheet_core.create_sheet_from_topic(db, settings, topic, "obstacle", mod, now=NOW)
    data = {name: (["FR"] if name == "countries" else f"{name} {HOSTILE}") for name in sheet_core.FIELDS}
    data.update(level="national", solution_status="found", border="DE-FR")
    sheet_core.save_version(db, sheet, f"Titre {HOSTILE}", data, mod, now=NOW)
    sheet_core.set_status(db, sheet, "published", mod, now=NOW)
    escalation, _ = esc_core.escalate(db, topic, "national", note=f"Note {HOSTILE}", actor=mod, now=NOW)
    esc_core.add_note(db, escalation, f"Suivi {HOSTILE}", actor=mod, now=NOW)
    db.commit()
    return sheet.id, escalation.id


def test_every_page_escapes_everything(client: FlaskClient, forum: Forum, hostile: tuple[int, int]) -> None:
    sheet_id, esc_id = hostile
    paths = ("/sheets", f"/sheets/{sheet_id}", f"/sheets/{sheet_id}/print", "/escalations", f"/escalations/{esc_id}",
             "/overview", f"/t/{forum.public_topic_id}")
    moderator_paths = (f"/sheets/{sheet_id}/edit", f"/sheets/{sheet_id}/history", f"/sheets/{sheet_id}/v/2")
    for who in (None, forum.moderator_id):
        if who:
            sign_in(client, who)
        for path in paths + (moderator_paths if who else ()):
            r = client.get(path)
            assert r.status_code == 200, path
            body = r.get_data(as_text=True)
            assert "&lt;script&gt;" in body or path == "/overview", path
            assert_inert(body, path)
    for figure in ("categories", "organisations"):
        svg = client.get(f"/overview/chart/{figure}.svg").get_data(as_text=True)
        # Names are XML text: escaped, never markup (pygal's own settings script is the only <script>).
        assert "<script>alert" not in svg and "<img" not in svg and "<svg/onload" not in svg
        assert svg.count("<script") == 1


GARBAGE_PATHS = (
    "/sheets/abc", "/sheets/0", "/sheets/-1", "/sheets/99999999999999999999", "/sheets/1/v/abc",
    "/sheets/1/v/99999999999", "/sheets/999/history", "/sheets/%00", "/sheets?kind=%00", "/sheets.csv?kind=x",
    "/sheets/1.xml", "/escalations/abc", "/escalations/99999999999999999999", "/escalations?state=%ff",
    "/escalations.json?level=%C3%A9", "/overview?from=%00", "/overview?to=9999-99", "/overview/chart/.svg",
    "/overview/chart/months.png", "/overview/%00.csv", "/overview?list=-1",
)


@pytest.mark.parametrize("path", GARBAGE_PATHS)
def test_garbage_urls(client: FlaskClient, forum: Forum, hostile: tuple[int, int], path: str) -> None:
    sign_in(client, forum.operator_id)
    r = client.get(path)
    assert r.status_code in (400, 404, 405), (path, r.status_code)
    assert b"<h1>" in r.data


def test_random_garbage_in_every_form_field(client: FlaskClient, forum: Forum, hostile: tuple[int, int],
                                            db: Session) -> None:
    sheet_id, esc_id = hostile
    forms = (
        ("/sheets/new", ("topic", "kind")),
        (f"/sheets/{sheet_id}/edit", ("title", "version", *sheet_core.FIELDS)),
        (f"/sheets/{sheet_id}/status", ("status",)),
        ("/escalations/new", ("topic", "level", "note")),
        (f"/escalations/{esc_id}", ("state", "note")),
    )
    rng = random.Random(20261123)
    sign_in(client, forum.operator_id)
    token = csrf(client)
    for path, fields in forms:
        for _round in range(15):
            data = {name: rng.choice(GARBAGE_VALUES) for name in fields}
            data["csrf_token"] = token
            r = client.post(path, data=data)
            assert r.status_code in (303, 400, 404, 409), (path, data, r.status_code)
        db.rollback()
    db.rollback()
    sheet = db.get(Sheet, sheet_id)
    assert sheet is not None and sheet.title.startswith("Titre")
    assert len(db.scalars(select(Sheet)).all()) >= 1
    assert client.get(f"/sheets/{sheet_id}").status_code == 200
