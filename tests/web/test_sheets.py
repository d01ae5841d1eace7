"""The sheets on the web: made from a topic, edited (each save a version), published; who sees what on
every page and export; garbage in every form field; the topic page links to its sheets."""

from __future__ import annotations

import csv
import io
import json

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from passerelle.models import ModerationAction, Sheet, SheetVersion
from tests.sheets.test_prefill import GARBAGE
from tests.web.conftest import Forum, csrf, sign_in

PRIVATE_WORDS = ("Xavier", "confidentiel", "secrète")
# A browser cannot send a lone surrogate; bytes that are not UTF-8 are tried in test_bad_requests instead.
WEB_GARBAGE = [g for g in GARBAGE if "\ud800" not in g[1]]


def english(client: FlaskClient) -> None:
    with client.session_transaction() as sess:
        sess["lang"] = "en"


def make_sheet(client: FlaskClient, forum: Forum, topic_id: int, kind: str = "obstacle") -> int:
    sign_in(client, forum.moderator_id)
    r = client.post("/sheets/new", data={"topic": topic_id, "kind": kind, "csrf_token": csrf(client)})
    assert r.status_code == 303, r.get_data(as_text=True)
    sheet_id = int(r.headers["Location"].split("/")[-2])
    assert r.headers["Location"].endswith(f"/sheets/{sheet_id}/edit")
    return sheet_id


def form_of(db: Session, sheet_id: int, **changes: str) -> dict[str, str]:
    db.rollback()
    sheet = db.get(Sheet, sheet_id)
    assert sheet is not None
    data = dict(sheet.data)
    form = {k: (" ".join(v) if isinstance(v, list) else str(v)) for k, v in data.items()}
    form.update(title=sheet.title, version=str(sheet.version))
    form.update(changes)
    db.rollback()
    return form


def save(client: FlaskClient, sheet_id: int, form: dict[str, str]) -> object:
    return client.post(f"/sheets/{sheet_id}/edit", data={**form, "csrf_token": csrf(client)})


def publish(client: FlaskClient, sheet_id: int, status: str = "published") -> None:
    r = client.post(f"/sheets/{sheet_id}/status", data={"status": status, "csrf_token": csrf(client)})
    assert r.status_code == 303


def test_lifecycle_on_the_web(client: FlaskClient, forum: Forum, db: Session) -> None:
    english(client)
    sheet_id = make_sheet(client, forum, forum.private_topic_id)
    page = client.get(f"/sheets/{sheet_id}/edit").get_data(as_text=True)
    # Pre-filled from the topic: its title, category, the participants' countries and border.
    assert 'value="Remboursement des soins transfrontaliers"' in page
    assert '<option value="Santé" selected>' in page
    assert 'value="DE FR"' in page and 'value="DE-FR"' in page
    assert "Réponse secrète" in page  # the closing message, for the moderator to edit

    # The same topic again: the same sheet, not a second one.
    r = client.post("/sheets/new", data={"topic": forum.private_topic_id, "kind": "obstacle",
                                          "csrf_token": csrf(client)})
    assert r.headers["Location"].endswith(f"/sheets/{sheet_id}/edit")
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Sheet)) == 1
    db.rollback()

    form = form_of(db, sheet_id, title="Soins transfrontaliers : remboursement refusé", level="national",
                   domain="Sécurité sociale", solution="Accord-cadre franco-allemand de 2005.",
                   legal_references="règlement (CE) n° 883/2004\n", solution_status="found")
    r = save(client, sheet_id, form)
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/sheets/{sheet_id}")
    page = client.get(f"/sheets/{sheet_id}").get_data(as_text=True)
    assert "Sheet saved (version 2)." in page and "Soins transfrontaliers : remboursement refusé" in page
    assert "Accord-cadre franco-allemand de 2005." in page and "National" in page
    # Saving again unchanged makes no version.
    r = save(client, sheet_id, form_of(db, sheet_id))
    assert "Nothing changed." in client.get(r.headers["Location"]).get_data(as_text=True)

    history = client.get(f"/sheets/{sheet_id}/history").get_data(as_text=True)
    assert "Modératrice" in history and history.count(f"/sheets/{sheet_id}/v/") == 2
    old = client.get(f"/sheets/{sheet_id}/v/1").get_data(as_text=True)
    assert "Remboursement des soins transfrontaliers" in old and "This is an older version" in old
    assert client.get(f"/sheets/{sheet_id}/v/3").status_code == 404

    publish(client, sheet_id)
    db.rollback()
    sheet = db.get(Sheet, sheet_id)
    assert sheet is not None and sheet.status == "published" and sheet.version == 2
    assert [v.number for v in db.scalars(select(SheetVersion).where(SheetVersion.sheet_id == sheet_id))] == [1, 2]
    actions = db.scalars(select(ModerationAction.action).where(ModerationAction.topic_id == forum.private_topic_id)
                         .order_by(ModerationAction.id)).all()
    assert actions == ["sheet", "sheet-edit", "sheet-publish"]
    db.rollback()
    publish(client, sheet_id, "draft")
    db.rollback()
    assert db.get(Sheet, sheet_id).status == "draft"  # type: ignore[union-attr]


def test_drafts_are_for_moderators_only(client: FlaskClient, forum: Forum) -> None:
    sheet_id = make_sheet(client, forum, forum.private_topic_id)
    sign_in(client, forum.operator_id)
    assert client.get(f"/sheets/{sheet_id}").status_code == 200
    for who in (None, forum.member_id, forum.outsider_id):
        client.delete_cookie("passerelle_session")
        if who:
            sign_in(client, who)
        for path in (f"/sheets/{sheet_id}", f"/sheets/{sheet_id}.json", f"/sheets/{sheet_id}.csv",
                     f"/sheets/{sheet_id}/print"):
            assert client.get(path).status_code == 404, (who, path)
        for path in ("/sheets", "/sheets.json", "/sheets.csv", f"/t/{forum.private_topic_id}"):
            body = client.get(path).get_data(as_text=True)
            assert f"/sheets/{sheet_id}" not in body, (who, path)
        # Moderators' pages: history and edit answer as if the sheet did not exist.
        assert client.get(f"/sheets/{sheet_id}/history").status_code == 404
        assert client.get(f"/sheets/{sheet_id}/edit").status_code == 404


def test_published_sheet_visibility(client: FlaskClient, forum: Forum, db: Session) -> None:
    private_id = make_sheet(client, forum, forum.private_topic_id)
    public_id = make_sheet(client, forum, forum.public_topic_id, kind="practice")
    publish(client, private_id)
    publish(client, public_id)
    client.delete_cookie("passerelle_session")
    english(client)

    # Public readers: the title of a sheet about a titles-only topic, the whole of a sheet about a public one.
    page = client.get(f"/sheets/{private_id}").get_data(as_text=True)
    assert "Remboursement des soins transfrontaliers" in page and "Only the title of this sheet is public" in page
    assert not any(w in page for w in PRIVATE_WORDS)
    record = json.loads(client.get(f"/sheets/{private_id}.json").get_data(as_text=True))
    assert record["title"] == "Remboursement des soins transfrontaliers" and "obstacle" not in record
    assert "contacts" not in record and "solution" not in record
    row = next(csv.DictReader(io.StringIO(client.get(f"/sheets/{private_id}.csv").data.decode("utf-8-sig"))))
    assert row["title"] == "Remboursement des soins transfrontaliers"
    assert row["obstacle"] == "" and row["solution"] == ""
    r = client.get(f"/sheets/{private_id}/print")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert client.get(f"/sheets/{private_id}/edit").status_code == 302

    public = client.get(f"/sheets/{public_id}").get_data(as_text=True)
    assert "Comment est imposé le télétravail" in public and "Printable version" in public
    listing = json.loads(client.get("/sheets.json").get_data(as_text=True))
    by_id = {s["id"]: s for s in listing["sheets"]}
    assert listing["count"] == 2 and "obstacle" in by_id[public_id] and "obstacle" not in by_id[private_id]
    rows = list(csv.DictReader(io.StringIO(client.get("/sheets.csv").data.decode("utf-8-sig"))))
    assert {r["id"] for r in rows} == {str(private_id), str(public_id)}
    assert not any(w in client.get("/sheets.csv").data.decode("utf-8-sig") for w in PRIVATE_WORDS)
    assert not any(w in client.get("/sheets").get_data(as_text=True) for w in PRIVATE_WORDS)
    kinds = json.loads(client.get("/sheets.json?kind=practice").get_data(as_text=True))
    assert [s["id"] for s in kinds["sheets"]] == [public_id]

    # Members read everything.
    sign_in(client, forum.member_id)
    page = client.get(f"/sheets/{private_id}").get_data(as_text=True)
    assert "Xavier" in page
    printable = client.get(f"/sheets/{private_id}/print")
    assert printable.status_code == 200 and "@media print" not in printable.get_data(as_text=True)
    assert "sheets.css" in printable.get_data(as_text=True)
    record = json.loads(client.get(f"/sheets/{private_id}.json").get_data(as_text=True))
    assert "Xavier" in record["obstacle"] and record["countries"] == ["DE", "FR"]
    row = next(csv.DictReader(io.StringIO(client.get(f"/sheets/{private_id}.csv").data.decode("utf-8-sig"))))
    assert "Xavier" in row["obstacle"] and row["border"] == "DE-FR"
    # But cannot change it.
    assert client.get(f"/sheets/{private_id}/edit").status_code == 403
    r = client.post(f"/sheets/{private_id}/status", data={"status": "draft", "csrf_token": csrf(client)})
    assert r.status_code == 403
    assert save(client, private_id, form_of(db, private_id, title="Pirate")).status_code == 403


def test_topic_page_links_to_its_sheets(client: FlaskClient, forum: Forum) -> None:
    sheet_id = make_sheet(client, forum, forum.public_topic_id)
    english(client)
    page = client.get(f"/t/{forum.public_topic_id}").get_data(as_text=True)
    assert f'href="/sheets/{sheet_id}"' in page and "Draft" in page
    assert 'action="/sheets/new"' in page and 'action="/escalations/new"' in page
    client.delete_cookie("passerelle_session")
    english(client)
    assert f"/sheets/{sheet_id}" not in client.get(f"/t/{forum.public_topic_id}").get_data(as_text=True)
    sign_in(client, forum.moderator_id)
    publish(client, sheet_id)
    client.delete_cookie("passerelle_session")
    english(client)
    page = client.get(f"/t/{forum.public_topic_id}").get_data(as_text=True)
    assert "Sheet:" in page and f'href="/sheets/{sheet_id}"' in page
    assert 'action="/sheets/new"' not in page
    # And the sheet links back to its topic.
    assert f'href="/t/{forum.public_topic_id}"' in client.get(f"/sheets/{sheet_id}").get_data(as_text=True)


@pytest.mark.parametrize(("field", "value", "code"), WEB_GARBAGE)
def test_garbage_in_each_form_field(client: FlaskClient, forum: Forum, db: Session, field: str, value: str,
                                    code: str) -> None:
    sheet_id = make_sheet(client, forum, forum.private_topic_id)
    english(client)
    r = save(client, sheet_id, form_of(db, sheet_id, **{field: value}))
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    assert "field needs attention" in page and "Nothing was saved" in page
    assert f'href="#f-{field}"' in page and 'aria-invalid="true"' in page
    db.rollback()
    assert db.get(Sheet, sheet_id).version == 1  # type: ignore[union-attr]
    db.rollback()


def test_form_keeps_what_was_typed(client: FlaskClient, forum: Forum, db: Session) -> None:
    sheet_id = make_sheet(client, forum, forum.private_topic_id)
    english(client)
    form = form_of(db, sheet_id, border="Frankreich", solution="Mon long texte <b>gras</b> & co.")
    page = save(client, sheet_id, form).get_data(as_text=True)
    assert "Mon long texte &lt;b&gt;gras&lt;/b&gt; &amp; co." in page
    assert "“Frankreich” is not a border" in page and 'value="Frankreich"' in page


def test_concurrent_edits_lose_nothing(client: FlaskClient, forum: Forum, db: Session) -> None:
    sheet_id = make_sheet(client, forum, forum.private_topic_id)
    english(client)
    stale = form_of(db, sheet_id, solution="Ma version")
    assert save(client, sheet_id, form_of(db, sheet_id, solution="Leur version")).status_code == 303
    r = save(client, sheet_id, stale)
    assert r.status_code == 409
    page = r.get_data(as_text=True)
    assert "Someone saved a newer version" in page and "Ma version" in page
    db.rollback()
    assert db.get(Sheet, sheet_id).data["solution"] == "Leur version"  # type: ignore[union-attr]
    db.rollback()


def test_bad_requests(client: FlaskClient, forum: Forum, db: Session) -> None:
    sheet_id = make_sheet(client, forum, forum.private_topic_id)
    token = csrf(client)
    assert client.get("/sheets/999999").status_code == 404
    assert client.get("/sheets?kind=poem").status_code == 400
    assert client.get("/sheets.json?status=%00").status_code == 400
    assert client.post("/sheets/new", data={"topic": "abc", "kind": "obstacle", "csrf_token": token}).status_code == 400
    assert client.post("/sheets/new", data={"topic": "1" * 40, "kind": "obstacle",
                                            "csrf_token": token}).status_code == 400
    assert client.post("/sheets/new", data={"topic": forum.public_topic_id, "kind": "poem",
                                            "csrf_token": token}).status_code == 400
    assert client.post("/sheets/new", data={"topic": 999999, "kind": "obstacle",
                                            "csrf_token": token}).status_code == 404
    assert client.post(f"/sheets/{sheet_id}/status", data={"status": "gone", "csrf_token": token}).status_code == 400
    # Without the CSRF token nothing happens.
    assert client.post(f"/sheets/{sheet_id}/status", data={"status": "published"}).status_code == 400
    r = save(client, sheet_id, form_of(db, sheet_id, version="x"))
    assert r.status_code == 400
    # Bytes that are not UTF-8: kept as Werkzeug reads them (escaped or replacement characters), never a 500.
    from urllib.parse import urlencode

    fields = {k: v for k, v in form_of(db, sheet_id).items() if k != "domain"}
    body = urlencode({**fields, "csrf_token": token}).encode() + b"&domain=%FF%FE%C3"
    r = client.post(f"/sheets/{sheet_id}/edit", data=body, content_type="application/x-www-form-urlencoded")
    assert r.status_code == 303
    db.rollback()
    assert db.get(Sheet, sheet_id).data["domain"] in ("%FF%FE%C3", "\ufffd\ufffd\ufffd", "\ufffd\ufffd")  # type: ignore[union-attr]
    db.rollback()
    assert db.get(Sheet, sheet_id).status == "draft"  # type: ignore[union-attr]
    db.rollback()
    # Members and strangers cannot make sheets.
    sign_in(client, forum.member_id)
    assert client.post("/sheets/new", data={"topic": forum.public_topic_id, "kind": "obstacle",
                                            "csrf_token": csrf(client)}).status_code == 403
    client.delete_cookie("passerelle_session")
    r = client.post("/sheets/new", data={"topic": forum.public_topic_id, "kind": "obstacle",
                                         "csrf_token": csrf(client)})
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_sheet_of_a_merged_topic_is_about_its_target(client: FlaskClient, forum: Forum, db: Session) -> None:
    from passerelle.models import Topic

    db.get(Topic, forum.public_topic_id).merged_into_id = forum.private_topic_id  # type: ignore[union-attr]
    db.commit()
    sheet_id = make_sheet(client, forum, forum.public_topic_id)
    db.rollback()
    assert db.get(Sheet, sheet_id).topic_id == forum.private_topic_id  # type: ignore[union-attr]
    db.rollback()
