"""Languages: catalogues read from the .po files (no compile step), French complete, the reader's choice
remembered, Accept-Language as the default."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient

from archive_web.i18n import TRANSLATIONS_DIR, load_catalogue, po_path
from tests.web.conftest import Forum

ROOT = Path(__file__).resolve().parents[2]


def extracted_ids() -> set[str]:
    method_map = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None, "lazy_gettext": None}
    ids: set[str] = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(ROOT / "archive_web"), method_map=method_map, keywords=keywords
    ):
        ids.add(message if isinstance(message, str) else message[0])
    return ids


def catalogue(language: str):
    with po_path(language).open("rb") as fh:
        return read_po(fh, locale=language)


def test_french_is_complete() -> None:
    ids = extracted_ids()
    assert len(ids) > 250
    cat = catalogue("fr")
    missing = []
    for msgid in sorted(ids):
        message = cat.get(msgid)
        strings = message.string if message is not None else None
        if not strings or (isinstance(strings, tuple) and not all(strings)) or (message and message.fuzzy):
            missing.append(msgid)
    assert missing == [], f"{len(missing)} strings without a French translation: {missing[:10]}"


@pytest.mark.parametrize("language", ["fr", "de", "it", "es"])
def test_catalogues_are_well_formed(language: str) -> None:
    cat = catalogue(language)
    # Fuzzy entries (guesses left by an update) are not used until someone checks them.
    problems = [(m.id, [str(e) for e in errors]) for m, errors in cat.check() if errors and not m.fuzzy]
    assert problems == []
    translated = sum(1 for m in cat if m.id and m.string and (not isinstance(m.string, tuple) or all(m.string)))
    assert translated / max(1, len([m for m in cat if m.id])) > 0.9


def test_catalogue_loads_without_compiled_files() -> None:
    assert not list(TRANSLATIONS_DIR.rglob("*.mo")), "translations are read from .po files; do not commit .mo"
    fr = load_catalogue("fr")
    assert fr.gettext("Sign in") == "Se connecter"
    assert fr.ngettext("%(num)d topic", "%(num)d topics", 2) == "%(num)d sujets"
    assert load_catalogue("xx").gettext("Sign in") == "Sign in"


def test_default_language_is_french(app: Flask, forum: Forum) -> None:
    page = app.test_client().get("/").get_data(as_text=True)
    assert '<html lang="fr">' in page and "Sujets récents" in page


@pytest.mark.parametrize(("header", "lang", "expected"), [
    ("de-DE,de;q=0.9,en;q=0.5", "de", "Neueste Themen"),
    ("it", "it", "Argomenti recenti"),
    ("es-ES", "es", "Temas recientes"),
    ("en-GB,en;q=0.8", "en", "Recent topics"),
    ("ja, zh", "fr", "Sujets récents"),
])
def test_accept_language(app: Flask, forum: Forum, header: str, lang: str, expected: str) -> None:
    page = app.test_client().get("/", headers={"Accept-Language": header}).get_data(as_text=True)
    assert f'<html lang="{lang}">' in page and expected in page


def test_language_switcher_is_remembered(client: FlaskClient, forum: Forum) -> None:
    page = client.get(f"/t/{forum.public_topic_id}").get_data(as_text=True)
    assert f'href="/lang/de?next=/t/{forum.public_topic_id}"' in page
    r = client.get(f"/lang/de?next=/t/{forum.public_topic_id}", headers={"Accept-Language": "it"})
    assert r.status_code == 303 and r.headers["Location"] == f"/t/{forum.public_topic_id}"
    page = client.get("/", headers={"Accept-Language": "it"}).get_data(as_text=True)
    assert '<html lang="de">' in page and "Neueste Themen" in page
    assert client.get("/lang/en?next=https://evil.example/").headers["Location"] == "/"
    assert client.get("/lang/klingon").status_code == 404


def test_error_pages_and_plurals_are_translated(client: FlaskClient, forum: Forum) -> None:
    client.get("/lang/es")
    assert "Página no encontrada" in client.get("/t/424242").get_data(as_text=True)
    assert "2 mensajes" in client.get(f"/t/{forum.public_topic_id}").get_data(as_text=True)
    client.get("/lang/fr")
    assert "2 messages" in client.get(f"/t/{forum.public_topic_id}").get_data(as_text=True)
