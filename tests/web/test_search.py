"""passerelle.search.search_messages (the one search interface) and the /search page."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from passerelle.models import Category, MailingList, Member
from passerelle.search import (
    SearchError,
    SearchQuery,
    fts5_expression,
    highlight_html,
    parse_terms,
    search_messages,
    tsquery_expression,
)
from tests.web.conftest import NOW, Forum, add_topic


def ids(db: Session, query: SearchQuery) -> list[str]:
    return [h.message_id for h in search_messages(db, query).hits]


def member_query(forum: Forum, **kw: object) -> SearchQuery:
    return SearchQuery(member_list_ids=frozenset({forum.list_id}), **kw)  # type: ignore[arg-type]


def test_accent_and_case_insensitive(db: Session, forum: Forum) -> None:
    pub = f"t{forum.public_topic_id}.0@test.example"
    assert pub in ids(db, SearchQuery(text="fiscalite"))
    assert pub in ids(db, SearchQuery(text="FISCALITÉ"))
    assert pub in ids(db, SearchQuery(text="teletravail"))


def test_snippets_are_highlighted_and_escaped(db: Session, forum: Forum) -> None:
    page = search_messages(db, SearchQuery(text="imposé"))
    hit = next(h for h in page.hits if h.message_pk == forum.public_message_pk)
    assert "<mark>imposé</mark>" in hit.snippet_html
    assert hit.author_name == "Jean Dupont"
    assert hit.readable


def test_newest_first_and_relevance(db: Session, forum: Forum) -> None:
    ml = db.get(MailingList, forum.list_id)
    cat = db.get(Category, forum.public_category_id)
    member = db.get(Member, forum.member_id)
    add_topic(db, ml, cat, "Mobilité", [(member, "mobilité mobilité mobilité transfrontalière")],
              start=NOW - timedelta(days=300), with_raw=False)
    add_topic(db, ml, cat, "Divers", [(member, "un mot sur la mobilité parmi beaucoup d'autres mots " * 5)],
              start=NOW - timedelta(days=1), with_raw=False)
    db.commit()
    by_date = search_messages(db, SearchQuery(text="mobilite")).hits
    assert [h.topic_subject for h in by_date] == ["Divers", "Mobilité"]
    by_rank = search_messages(db, SearchQuery(text="mobilite", order="relevance")).hits
    assert by_rank[0].topic_subject == "Mobilité"


def test_phrase_prefix_and_exclusion(db: Session, forum: Forum) -> None:
    pub = f"t{forum.public_topic_id}.0@test.example"
    assert pub in ids(db, SearchQuery(text='"télétravail des frontaliers"'))
    assert pub not in ids(db, SearchQuery(text='"frontaliers télétravail"'))
    assert pub in ids(db, SearchQuery(text="teletrav*"))
    assert pub not in ids(db, SearchQuery(text="fiscalite -impose"))


def test_criteria(db: Session, forum: Forum) -> None:
    q = member_query(forum, author="muller")
    authors = {h.author_name for h in search_messages(db, q).hits}
    assert authors == {"Anna Müller"}
    assert ids(db, member_query(forum, organisation_id=forum.org_id)) == [
        f"t{forum.private_topic_id}.1@test.example", f"t{forum.public_topic_id}.0@test.example"]
    assert {h.author_name for h in search_messages(db, member_query(forum, country="de")).hits} == {"Anna Müller"}
    assert len(ids(db, member_query(forum, border="DE-FR"))) == 4
    assert set(ids(db, member_query(forum, category_id=forum.private_category_id))) == {
        f"t{forum.private_topic_id}.0@test.example", f"t{forum.private_topic_id}.1@test.example"}
    assert len(ids(db, member_query(forum, tag="teletravail"))) == 2
    assert len(ids(db, member_query(forum, status="open"))) == 2
    assert ids(db, member_query(forum, status="escalated")) == []
    assert len(ids(db, member_query(forum, date_from=date(2026, 11, 3)))) == 2
    assert len(ids(db, member_query(forum, date_to=date(2026, 11, 2)))) == 2
    assert ids(db, member_query(forum, date_from=date(2027, 1, 1))) == []


def test_titles_only(db: Session, forum: Forum) -> None:
    # "frontaliers" is in a body of the private topic ("transfrontaliers" is not the same word), and in
    # the public topic's title: titles only finds the topic once, by its first message.
    got = ids(db, member_query(forum, text="frontaliers", titles_only=True))
    assert got == [f"t{forum.public_topic_id}.0@test.example"]
    assert ids(db, member_query(forum, text="caisse", titles_only=True)) == []


def test_titles_only_topics_hide_everything_but_the_title(db: Session, forum: Forum) -> None:
    # Public reader, "titles" category: a body word finds nothing; a title word finds the topic, bare.
    assert ids(db, SearchQuery(text="Xavier")) == []
    assert ids(db, SearchQuery(text="secrète")) == []
    page = search_messages(db, SearchQuery(text="remboursement"))
    assert len(page.hits) == 1
    hit = page.hits[0]
    assert not hit.readable and hit.topic_subject == "Remboursement des soins transfrontaliers"
    assert hit.snippet_html == hit.subject_html == hit.author_name == hit.author_address == ""
    # Criteria about people or tags never reach titles-only topics.
    assert ids(db, SearchQuery(author="anna")) == [f"t{forum.public_topic_id}.1@test.example"]
    assert ids(db, SearchQuery(author="anna", category_id=forum.private_category_id)) == []
    assert ids(db, SearchQuery(tag="teletravail", category_id=forum.private_category_id)) == []
    assert all(h.readable for h in search_messages(db, SearchQuery(country="DE")).hits)
    # A member sees it all.
    assert len(ids(db, member_query(forum, text="Xavier"))) == 1
    assert len(ids(db, SearchQuery(text="Xavier", see_everything=True))) == 1


def test_empty_and_garbage_queries(db: Session, forum: Forum) -> None:
    assert search_messages(db, SearchQuery()).hits == ()
    assert search_messages(db, SearchQuery(text="!!! ... ---")).hits == ()
    for garbage in ['" OR * NEAR( {subject}:x ^', "a AND OR NOT", "'; DROP TABLE messages; --", "\\\\",
                    "title:foo", "😀", "x" * 400, "-only -negative"]:
        search_messages(db, SearchQuery(text=garbage))
        search_messages(db, SearchQuery(text=garbage, order="relevance", titles_only=True))
    with pytest.raises(SearchError):
        search_messages(db, SearchQuery(text="x", order="random"))
    with pytest.raises(SearchError):
        search_messages(db, SearchQuery(text="x", page=0))
    with pytest.raises(SearchError):
        search_messages(db, SearchQuery(text="x", date_from=date(2026, 2, 1), date_to=date(2026, 1, 1)))


def test_pagination(db: Session, forum: Forum) -> None:
    ml = db.get(MailingList, forum.list_id)
    cat = db.get(Category, forum.public_category_id)
    member = db.get(Member, forum.member_id)
    for i in range(7):
        add_topic(db, ml, cat, f"Page {i}", [(member, "pagination")], start=NOW - timedelta(days=i),
                  with_raw=False)
    db.commit()
    first = search_messages(db, SearchQuery(text="pagination", page_size=5))
    second = search_messages(db, SearchQuery(text="pagination", page_size=5, page=2))
    assert len(first.hits) == 5 and first.has_next and not first.has_prev
    assert len(second.hits) == 2 and not second.has_next and second.has_prev
    assert not {h.message_pk for h in first.hits} & {h.message_pk for h in second.hits}


def test_query_builders_never_pass_reader_syntax() -> None:
    terms = parse_terms('fiscal* "zone bleue" -bus NEAR(x) {col}: "unclosed')
    # A word written with punctuation inside ("franco-allemand", "NEAR(x)") is searched as a phrase.
    assert fts5_expression(terms) == '("fiscal"* AND "zone bleue" AND "NEAR x" AND "col" AND "unclosed") NOT "bus"'
    assert tsquery_expression(terms) == (
        "('fiscal':*) & ('zone' <-> 'bleue') & !('bus') & ('NEAR' <-> 'x') & ('col') & ('unclosed')"
    )
    assert highlight_html("a <b> \ue000c\ue001") == "a &lt;b&gt; <mark>c</mark>"
    assert highlight_html("\ue000unbalanced") == "unbalanced"


def test_search_page(client: FlaskClient, forum: Forum) -> None:
    r = client.get("/search?q=fiscalite")
    page = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "<mark>Fiscalité</mark>" in page
    assert f'href="/t/{forum.public_topic_id}#m{forum.public_message_pk}"' in page
    page = client.get("/search?q=remboursement").get_data(as_text=True)
    assert "Remboursement des soins transfrontaliers" in page and "Members only" in page
    assert "confidentiel" not in page
    page = client.get("/search").get_data(as_text=True)
    assert "Type some words" in page
    page = client.get("/search?q=fiscalite&author=dupont&order=relevance&from=2026-01-01&to=2026-12-31").get_data(
        as_text=True)
    assert "Jean Dupont" in page and "Anna" not in page.split('class="results"')[1]


def test_search_page_bad_criteria(client: FlaskClient, forum: Forum) -> None:
    for qs in ("from=yesterday", "to=2026-13-45", "org=abc", "category=-1", "status=maybe", "order=random",
               "country=FRA", "border=DE_FR", "page=0", "page=99999999999999999999", "q=" + "x" * 600,
               "from=2026-02-01&to=2026-01-01", "q=%00"):
        r = client.get(f"/search?{qs}")
        assert r.status_code == 400, qs
        assert "<h1>Bad request</h1>" in r.get_data(as_text=True)
