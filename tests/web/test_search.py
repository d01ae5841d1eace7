"""passerelle.search.search_messages (the one search interface) and the /search page."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from passerelle import search as search_module
from passerelle.models import Category, MailingList, Member, Message
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


def _walk_archive(db: Session, forum: Forum) -> dict[str, list[tuple[datetime, int, str]]]:
    """Topics whose ids do not follow their dates (shuffled, then an old archive imported last, and two
    topics started at the same second), in a public category and in a titles-only one. Returns what each
    reader must find for "archivage", newest first: (date, pk, Message-ID)."""
    ml = db.get(MailingList, forum.list_id)
    public = db.get(Category, forum.public_category_id)
    titles = db.get(Category, forum.private_category_id)
    member = db.get(Member, forum.member_id)
    days = list(range(1, 26))
    random.Random(7).shuffle(days)
    plan = [(public, f"Sujet {d}", NOW - timedelta(days=d)) for d in days]
    plan += [(titles, f"Privé {d}", NOW - timedelta(days=d, hours=5)) for d in days[:8]]
    plan += [(titles, "Archivage des dossiers", NOW - timedelta(days=3, hours=1))]
    plan += [(public, f"Ancien {d}", NOW - timedelta(days=4000 + d)) for d in range(10)]
    same = NOW - timedelta(days=2, minutes=30)
    plan += [(public, "Même seconde A", same), (titles, "Archivage même seconde", same)]
    public_hits: list[tuple[datetime, int, str]] = []
    member_hits: list[tuple[datetime, int, str]] = []
    for category, subject, start in plan:
        _topic, msgs = add_topic(db, ml, category, subject, [(member, "archivage du courrier"),
                                                             (member, "Re: archivage, suite")],
                                 start=start, with_raw=False)
        for msg in msgs:
            hit = (msg.date.replace(tzinfo=None), msg.id, msg.message_id)
            member_hits.append(hit)
            # A public reader sees a titles-only topic only when its title matches, through its first message.
            if category is public or (msg is msgs[0] and "Archivage" in subject):
                public_hits.append(hit)
    db.commit()
    return {
        "public": sorted(public_hits, reverse=True),
        "member": sorted(member_hits, reverse=True),
    }


def _all_pages(db: Session, query: SearchQuery) -> list[str]:
    got: list[str] = []
    for page_number in range(1, 100):
        page = search_messages(db, replace(query, page=page_number))
        got += [h.message_id for h in page.hits]
        assert len(page.hits) == query.page_size or not page.has_next
        if not page.has_next:
            return got
    raise AssertionError("too many pages")


@pytest.mark.parametrize("rounds", ["small", "default"])
def test_newest_first_pages_when_ids_do_not_follow_dates(
    db: Session, forum: Forum, monkeypatch: pytest.MonkeyPatch, rounds: str
) -> None:
    # SQLite reads the index's matches by descending id a round at a time: small rounds make every page
    # need several, across the shuffled, imported-late and same-second topics.
    if rounds == "small":
        monkeypatch.setattr(search_module, "_WALK_FIRST", 2)
        monkeypatch.setattr(search_module, "_WALK_MOST", 4)
    expected = _walk_archive(db, forum)
    for page_size in (1, 3, 7, 200):
        assert _all_pages(db, SearchQuery(text="archivage", page_size=page_size)) == [
            mid for _d, _pk, mid in expected["public"]]
        assert _all_pages(db, member_query(forum, text="archivage", page_size=page_size)) == [
            mid for _d, _pk, mid in expected["member"]]
    # Titles only, and a criterion on top of the words.
    titles = _all_pages(db, SearchQuery(text="archivage", titles_only=True, page_size=4))
    assert titles == [mid for _d, _pk, mid in expected["public"] if mid.endswith(".0@test.example")
                      and db.query(Message).filter_by(message_id=mid).one().subject.lower().count("archivage")]
    cutoff = date(2026, 1, 1)
    assert _all_pages(db, member_query(forum, text="archivage", date_to=cutoff, page_size=3)) == [
        mid for d, _pk, mid in expected["member"] if d.date() <= cutoff]
    # Start dates that leave the first page short, or fill a few pages.
    for days in (2, 6, 12):
        since = (NOW - timedelta(days=days)).date()
        assert _all_pages(db, SearchQuery(text="archivage", date_from=since, page_size=5)) == [
            mid for d, _pk, mid in expected["public"] if d.date() >= since]


def test_newest_first_never_finds_private_bodies(db: Session, forum: Forum, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_module, "_WALK_FIRST", 2)
    monkeypatch.setattr(search_module, "_WALK_MOST", 2)
    _walk_archive(db, forum)
    # "courrier" is in every first post, public and titles-only: the public reader gets public posts only,
    # with their snippets, and never a titles-only topic (no title says "courrier").
    hits = [h for n in (1, 2, 3) for h in search_messages(db, SearchQuery(text="courrier", page_size=15, page=n)).hits]
    assert len(hits) == 36 and all(h.readable and h.category_id == forum.public_category_id for h in hits)
    assert all("<mark>courrier</mark>" in h.snippet_html for h in hits)
    # A word found only in titles-only bodies finds nothing, whatever the page.
    for n in (1, 2):
        assert search_messages(db, SearchQuery(text="Xavier", page_size=1, page=n)).hits == ()
        assert search_messages(db, SearchQuery(text="secrète confidentiel", page=n)).hits == ()
    # Title hits in a titles-only category are bare.
    bare = [h for h in search_messages(db, SearchQuery(text="archivage", page_size=200)).hits if not h.readable]
    assert {h.topic_subject for h in bare} == {"Archivage des dossiers", "Archivage même seconde"}
    assert all(h.snippet_html == h.subject_html == h.author_name == "" and h.rank == 0.0 for h in bare)


def test_newest_first_hits_show_what_relevance_hits_show(db: Session, forum: Forum) -> None:
    _walk_archive(db, forum)
    query = member_query(forum, text="archivage suite", page_size=200)
    by_date = {h.message_pk: h for h in search_messages(db, query).hits}
    by_rank = {h.message_pk: h for h in search_messages(db, replace(query, order="relevance")).hits}
    assert set(by_date) == set(by_rank) and len(by_date) == 46
    for pk, hit in by_date.items():
        # The score is computed for relevance order only.
        assert hit.rank == 0.0 and by_rank[pk].rank != 0.0
        assert replace(hit, rank=by_rank[pk].rank) == by_rank[pk]
