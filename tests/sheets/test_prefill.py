"""gateway.sheets: a sheet pre-filled from a topic, validation of every field, versions and exports."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway import sheets
from passerelle.config import Settings
from passerelle.models import ModerationAction, SheetVersion
from tests.sheets.conftest import T_OPEN, Network


def test_prefill_from_the_topic(db: Session, network: Network) -> None:
    title, data = sheets.prefill(db, network.topic)
    # Reply and forward prefixes are not part of a sheet's title.
    assert title == "Apprentissage transfrontalier : contrat non reconnu"
    assert data["countries"] == ["DE", "FR"]
    assert data["border"] == "DE-FR"
    assert data["category"] == "Emploi et formation"
    assert data["solution_status"] == "found"  # closed as solved
    assert data["level"] == ""
    # The obstacle is the first message's own words: no salutation, no signature.
    assert data["obstacle"].startswith("Nos apprentis allemands")
    assert "Eurométropole de Strasbourg" not in data["obstacle"]
    # The solution: the answer of someone other than the author, trimmed like the corpus' ground truth says;
    # the author's own "C'est super !" is no solution.
    assert network.german_kept in data["solution"]
    assert network.french_kept not in data["solution"]
    assert "Discourse c'est top" not in data["solution"]  # quoted text left out
    assert "K-9 Mail" not in data["solution"]  # mobile signature left out
    assert data["solution"].startswith("— Anna Müller, Stadt Kehl (2026-09-07)\n")
    # Legal references, in the order the messages name them.
    assert data["legal_references"].splitlines() == [
        "article L. 6222-1 du code du travail", "directive 2005/36/CE", "règlement (CE) n° 883/2004",
    ]
    # Contacts name people and organisations, never addresses (a sheet may be public).
    assert "Anna Müller, Stadt Kehl (DE)" in data["contacts"]
    assert "@" not in data["contacts"]


def test_only_messages_before_the_close_are_the_solution(db: Session, network: Network) -> None:
    from tests.web.conftest import add_topic

    topic = network.topic
    topic.closed_at = T_OPEN + timedelta(hours=1, minutes=30)  # after the German reply, before the French one
    db.flush()
    _title, data = sheets.prefill(db, topic)
    assert network.german_kept in data["solution"]
    assert network.french_kept not in data["solution"]
    # A topic with a single message: that message is all there is.
    single, _ = add_topic(db, network.ml, None, "Question seule", [(network.anna, "Nur eine Frage.")],
                          start=T_OPEN, with_raw=False)
    _t, data = sheets.prefill(db, single)
    assert data["solution"].endswith("Nur eine Frage.")
    # The author's organisation is on the French-German border: the obstacle is too.
    assert data["countries"] == ["DE", "FR"] and data["border"] == "DE-FR" and data["category"] == ""


def test_legal_references_in_several_languages() -> None:
    refs = sheets.legal_references([
        "Siehe Verordnung (EG) Nr. 883/2004 und Richtlinie 2014/54/EU.",
        "Voir la loi n° 2019-1479 et le décret n° 2020-12, art. 57 du code général des impôts.",
        "Regulation (EU) 2019/1157; articolo 14 della legge. Regulation (EU) 2019/1157 again.",
    ])
    assert "Verordnung (EG) Nr. 883/2004" in refs
    assert "Richtlinie 2014/54/EU" in refs
    assert "loi n° 2019-1479" in refs and "décret n° 2020-12" in refs
    assert any(r.startswith("art. 57 du code général des impôts") for r in refs)
    assert refs.count("Regulation (EU) 2019/1157") == 1
    assert sheets.legal_references(["Rien de juridique ici, 12 articles de presse."]) == []


def test_create_sheet_from_topic_once_per_kind(db: Session, settings: Settings, network: Network) -> None:
    now = T_OPEN + timedelta(days=5)
    sheet = sheets.create_sheet_from_topic(db, settings, network.topic, "obstacle", network.mod, now=now)
    again = sheets.create_sheet_from_topic(db, settings, network.topic, "obstacle", network.mod, now=now)
    practice = sheets.create_sheet_from_topic(db, settings, network.topic, "practice", None, now=now)
    assert again.id == sheet.id and practice.id != sheet.id
    assert sheet.status == "draft" and sheet.version == 1 and sheet.list_id == network.ml.id
    assert sheet.created_at == now and sheet.published_at is None
    versions = db.scalars(select(SheetVersion).where(SheetVersion.sheet_id == sheet.id)).all()
    assert [(v.number, v.author_id, v.title) for v in versions] == [(1, network.mod.id, sheet.title)]
    with pytest.raises(sheets.SheetError):
        sheets.create_sheet_from_topic(db, settings, network.topic, "poem", None, now=now)


def test_versions_and_publication(db: Session, settings: Settings, network: Network) -> None:
    now = T_OPEN + timedelta(days=5)
    sheet = sheets.create_sheet_from_topic(db, settings, network.topic, "obstacle", network.mod, now=now)
    title, data, errors = sheets.validate({**sheet.data, "title": "Apprentis : contrat non reconnu",
                                           "countries": "fr de", "level": "national", "domain": "Formation"})
    assert errors == []
    v2 = sheets.save_version(db, sheet, title, data, network.mod, now=now + timedelta(hours=1))
    assert v2 is not None and v2.number == 2 and sheet.version == 2
    assert sheet.data["countries"] == ["DE", "FR"] and sheet.data["level"] == "national"
    # Saving the same thing again is not a version.
    assert sheets.save_version(db, sheet, title, data, network.mod, now=now + timedelta(hours=2)) is None
    assert db.scalar(select(func.count()).select_from(SheetVersion).where(SheetVersion.sheet_id == sheet.id)) == 2
    assert sheets.set_status(db, sheet, "published", network.mod, now=now + timedelta(hours=3))
    assert sheet.published_at == now + timedelta(hours=3)
    assert not sheets.set_status(db, sheet, "published", network.mod, now=now + timedelta(hours=4))
    with pytest.raises(sheets.SheetError):
        sheets.set_status(db, sheet, "archived", network.mod, now=now)
    actions = db.scalars(select(ModerationAction.action).where(ModerationAction.topic_id == network.topic.id)).all()
    assert actions == ["sheet-edit", "sheet-publish"]


GARBAGE = [
    ("title", "", "required"),
    ("title", "x" * 301, "too_long"),
    ("title", "bad\x00title", "invalid_characters"),
    ("title", "bell\x07", "invalid_characters"),
    ("domain", "line\x1b[31m", "invalid_characters"),
    ("obstacle", "x" * 20_001, "too_long"),
    ("obstacle", "nul \x00 byte", "invalid_characters"),
    ("solution", "surrogate \ud800", "invalid_characters"),
    ("level", "galactic", "bad_choice"),
    ("level", "<script>", "bad_choice"),
    ("solution_status", "maybe", "bad_choice"),
    ("countries", "FR, France", "bad_country"),
    ("countries", "F1", "bad_country"),
    ("countries", "FR " * 100, "too_long"),
    ("border", "France-Allemagne", "bad_border"),
    ("border", "FR", "bad_border"),
    ("border", "' OR 1=1 --", "bad_border"),
    ("category", "Inconnue", "unknown_category"),
    ("legal_references", "r" * 10_001, "too_long"),
    ("contacts", "c" * 5_001, "too_long"),
]


@pytest.mark.parametrize(("field", "value", "code"), GARBAGE)
def test_garbage_in_each_field_gives_a_clear_error(field: str, value: str, code: str) -> None:
    form = {"title": "Un titre", field: value}
    title, data, errors = sheets.validate(form, categories=["Emploi et formation"])
    assert [(e.field, e.code) for e in errors] == [(field, code)]
    # Every field is still returned, the bad one too: a form shown again keeps what was typed.
    if field != "title":
        assert title == "Un titre" and data[field]


def test_validation_cleans_what_it_keeps() -> None:
    title, data, errors = sheets.validate({
        "title": "  Deux   espaces \n ", "countries": "de; fr,FR", "border": "fr-de", "level": "european",
        "obstacle": "ligne 1  \r\nligne 2\r\n\r\n", "category": "",
    }, categories=["Emploi et formation"])
    assert errors == []
    assert title == "Deux espaces"
    assert data["countries"] == ["DE", "FR"] and data["border"] == "DE-FR"
    assert data["obstacle"] == "ligne 1\nligne 2"
    # Lists where a string is expected, from a JSON client, are refused rather than guessed.
    _t, _d, errors = sheets.validate({"title": ["a", "b"]})
    assert ("title", "not_a_list") in [(e.field, e.code) for e in errors]


def test_exports_parse_back(db: Session, settings: Settings, network: Network) -> None:
    sheet = sheets.create_sheet_from_topic(db, settings, network.topic, "obstacle", network.mod,
                                           now=T_OPEN + timedelta(days=5))
    sheet.data = {**sheet.data, "domain": "=HYPERLINK(\"http://evil\")"}
    full = sheets.record(sheet, full=True, base_url="http://archive.test/")
    assert list(full) == list(sheets.EXPORT_COLUMNS)
    assert full["url"] == f"http://archive.test/sheets/{sheet.id}"
    assert full["topic_url"] == f"http://archive.test/t/{network.topic.id}"
    back = json.loads(json.dumps(full, ensure_ascii=False))
    assert back["countries"] == ["DE", "FR"] and back["obstacle"] == sheet.data["obstacle"]
    out = io.StringIO()
    csv.writer(out).writerows([sheets.EXPORT_COLUMNS, sheets.csv_row(full)])
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["countries"] == "DE FR" and rows[0]["solution"] == sheet.data["solution"]
    # A formula is written as text for spreadsheets.
    assert rows[0]["domain"] == "'=HYPERLINK(\"http://evil\")"
    titles = sheets.record(sheet, full=False, base_url="http://archive.test")
    assert set(titles) == set(sheets.TITLE_ONLY_COLUMNS)
    assert "obstacle" not in titles and "contacts" not in titles
