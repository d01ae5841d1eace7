"""PostgreSQL full text: accent-insensitive and stemmed per language (FR, DE, IT, ES, EN), through the same
search_messages the web archive calls. Runs on the test cluster whatever PASSERELLE_TEST_DATABASE says."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from passerelle.db import make_engine, make_session_factory
from passerelle.models import Message, Topic
from passerelle.search import SearchQuery, guess_language, index_message, search_messages
from tests.factories import T0, make_list
from tests.pg_cluster import reset_database

pytestmark = pytest.mark.postgres

POSTS = {
    "fr": ("Fiscalité des travailleurs frontaliers",
           "Les travailleurs frontaliers qui résident en France et travaillent au Luxembourg nous demandent"
           " comment sont calculées leurs impositions depuis la nouvelle convention fiscale."),
    "de": ("Grenzgänger und Krankenversicherung",
           "Die Grenzgänger, die in Deutschland wohnen und in der Schweiz arbeiten, sind bei der Wahl ihrer"
           " Krankenversicherungen oft unsicher. Wir haben Beratungsstellen eingerichtet."),
    "it": ("Lavoratori frontalieri e pensione",
           "I lavoratori frontalieri che sono residenti in Italia e lavorano in Svizzera chiedono come"
           " vengono calcolate le pensioni della previdenza svizzera."),
    "es": ("Trabajadores transfronterizos y sanidad",
           "Los trabajadores que viven en España y trabajan en Francia preguntan por las tarjetas sanitarias"
           " y los hospitales de la frontera que son más cercanos."),
    "en": ("Commuters and training courses",
           "The commuters who are working across the border asked for training courses that are recognised"
           " by both countries, and for the diplomas they would obtain."),
}


@pytest.fixture
def pg_session(postgres_url: str) -> Iterator[Session]:
    engine: Engine = make_engine(postgres_url)
    reset_database(engine)
    session = make_session_factory(engine)()
    try:
        ml = make_list(session, "forum")
        for n, (language, (subject, body)) in enumerate(POSTS.items()):
            topic = Topic(list_id=ml.id, subject=subject, normalized_subject=subject.lower(), created_at=T0,
                          last_post_at=T0)
            session.add(topic)
            session.flush()
            message = Message(topic_id=topic.id, message_id=f"{language}@example.org", from_name="Camille Martin",
                              from_addr="camille@example.org", subject=subject, date=T0 + timedelta(minutes=n),
                              received_at=T0, body_text=body, new_text=body)
            session.add(message)
            session.flush()
            index_message(session, message)
        session.commit()
        yield session
    finally:
        session.close()
        engine.dispose()


def _found(session: Session, words: str) -> set[str]:
    page = search_messages(session, SearchQuery(text=words, see_everything=True))
    return {h.message_id.split("@")[0] for h in page.hits}


def test_languages_are_recognised() -> None:
    assert {language: guess_language(f"{s} {b}") for language, (s, b) in POSTS.items()} == {
        "fr": "fr", "de": "de", "it": "it", "es": "es", "en": "en"}
    assert guess_language("Merci !") is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("fiscalite", {"fr"}),                   # accents folded
        ("travailleur frontalier", {"fr"}),      # French plural -> singular
        ("imposition", {"fr"}),
        ("Grenzgängern", {"de"}),                # German dative plural
        ("Krankenversicherung", {"de"}),         # the post says "Krankenversicherungen"
        ("pensione previdenze", {"it"}),
        ("trabajador tarjeta sanitaria", {"es"}),
        ("hospital", {"es"}),                    # the post says "hospitales"
        ("commuter course", {"en"}),
        ("recognized", set()),                   # stemming, not spelling correction
        ("frontalier", {"fr", "it"}),            # "frontaliers" and Italian "frontalieri"
    ],
)
def test_inflected_and_unaccented_forms_are_found(pg_session: Session, query: str, expected: set[str]) -> None:
    assert _found(pg_session, query) == expected


def test_exclusions_and_phrases_still_work(pg_session: Session) -> None:
    assert _found(pg_session, "frontalieri -pensione") == set()
    assert _found(pg_session, "frontalieri -sanitarias") == {"it"}
    assert _found(pg_session, '"lavoratori frontalieri"') == {"it"}
    # A prefix matches words as written, unstemmed.
    assert _found(pg_session, "fronte*") == {"es"}       # "frontera"
    assert _found(pg_session, "frontal*") == {"fr", "it"}


def test_indexed_document_holds_plain_and_stemmed_forms(pg_session: Session) -> None:
    document = pg_session.execute(text(
        "SELECT document::text FROM message_search s JOIN messages m ON m.id = s.message_pk"
        " WHERE m.message_id = 'fr@example.org'")).scalar_one()
    assert "'fiscalite'" in document and "'fiscal'" in document
    assert "'travailleurs'" in document and "'travailleur'" in document
