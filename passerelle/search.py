"""Full-text search behind one interface: SQLite FTS5 by default, PostgreSQL full text at scale.

The index holds one row per archived message, keyed by the message's primary key: its subject, its new
text (quotes and signatures trimmed, so a reply does not match on what it quotes) and its author.
Accent- and case-insensitive: "fiscalite" finds "fiscalité" (FTS5 unicode61 remove_diacritics 2;
PostgreSQL: a text search configuration ``passerelle`` = simple + unaccent).

Query side: :func:`search_messages` takes a :class:`SearchQuery` (simple text and criteria, plus what the
reader may see) and returns a :class:`SearchPage` of hits with highlighted snippets. Visibility is
enforced here, in SQL, so that no caller can forget it: in a topic the reader may not read (a category
open to the public for titles only, and a reader who is not a member of the list), only the topic's
title can match, only the topic's first message stands for it, and the hit carries no author, subject
of a reply, nor snippet.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    column,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    table,
    text,
    true,
)
from sqlalchemy.orm import Session, aliased

from .models import Category, MailingList, Member, Message, Organisation, Tag, Topic, topic_tags

SQLITE_TABLE = "message_search"
# Name kept for the PostgreSQL side too (one table name whatever the backend).
SEARCH_TABLE = SQLITE_TABLE
# PostgreSQL text search configuration: the "simple" parser/dictionary with unaccent in front, so that
# to_tsvector, to_tsquery and ts_headline all fold accents the same way.
PG_CONFIG = "passerelle"
# PostgreSQL only: per-language stemming. A message's document also holds its words stemmed in its
# language (guessed from its function words), through configurations "unaccent, <language>_stem"; a
# query is matched in its plain form and stemmed in each language, so "fiscalités" finds "fiscalité",
# "Grenzgängern" finds "Grenzgänger", "trabajadores" finds "trabajador".
PG_STEM_CONFIGS = {
    "fr": ("passerelle_fr", "french_stem"),
    "de": ("passerelle_de", "german_stem"),
    "it": ("passerelle_it", "italian_stem"),
    "es": ("passerelle_es", "spanish_stem"),
    "en": ("passerelle_en", "english_stem"),
}
_PG_WORD_TYPES = "asciiword, asciihword, hword_asciipart, word, hword, hword_part"
# The most frequent words of each language that the others rarely use (accents stripped).
_FUNCTION_WORDS_TEXT = {
    "fr": "le les des est une pour pas qui dans sur avec nous vous sont aux cette mais ou ce du au ils elle etre "
          "ete tres aussi",
    "de": "der die das und ist nicht ein eine zu den mit sich auf fur im dem wir sie auch als nach wie bei oder "
          "sind wird werden",
    "it": "il che di non per sono della con gli del nel anche questo come ma piu alla dei delle essere stato sulla",
    "es": "el los las que por con para del es se al lo como mas pero sus este esta son muy tambien desde",
    "en": "the and is of to in that for it with as be on not this are by or have from we you can would",
}
_FUNCTION_WORDS = {language: frozenset(words.split()) for language, words in _FUNCTION_WORDS_TEXT.items()}
_GUESS_CHARS = 4000

# Private-use characters bracket highlighted words in snippets; highlight_html() turns them into <mark>.
MARK_START = "\ue000"
MARK_END = "\ue001"

ORDERS = ("date", "relevance")
STATUS_FILTERS = ("open", "answered", "closed", "escalated")
# Bounds on what one query may ask of the index (a pasted paragraph must not become 300 AND terms).
MAX_TERMS = 12
MAX_WORD_LENGTH = 64
MAX_PAGE = 1000
SNIPPET_FALLBACK_CHARS = 240

_WORD = re.compile(r"[^\W_]+")
_TOKEN = re.compile(r'(-?)"([^"]*)"?|(-?)([^\s"]+)')


def create_search_schema(conn: Connection) -> None:
    """Create the index structures if missing (idempotent; also run by the migrations)."""
    if conn.dialect.name == "sqlite":
        conn.execute(
            text(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {SQLITE_TABLE} USING fts5("
                "subject, body, author, tokenize = 'unicode61 remove_diacritics 2')"
            )
        )
    else:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS unaccent"))
        conn.execute(
            text(
                "DO $$ BEGIN"
                f" IF NOT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = '{PG_CONFIG}') THEN"
                f" CREATE TEXT SEARCH CONFIGURATION {PG_CONFIG} (COPY = simple);"
                f" ALTER TEXT SEARCH CONFIGURATION {PG_CONFIG}"
                " ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part, numword,"
                " numhword WITH unaccent, simple;"
                " END IF; END $$"
            )
        )
        for config, stemmer in PG_STEM_CONFIGS.values():
            conn.execute(
                text(
                    "DO $$ BEGIN"
                    f" IF NOT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = '{config}') THEN"
                    f" CREATE TEXT SEARCH CONFIGURATION {config} (COPY = simple);"
                    f" ALTER TEXT SEARCH CONFIGURATION {config} ALTER MAPPING FOR {_PG_WORD_TYPES}"
                    f" WITH unaccent, {stemmer};"
                    " END IF; END $$"
                )
            )
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {SQLITE_TABLE} ("
                " message_pk INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,"
                " subject_tsv tsvector NOT NULL, document tsvector NOT NULL)"
            )
        )
        conn.execute(
            text(f"CREATE INDEX IF NOT EXISTS ix_{SQLITE_TABLE}_document ON {SQLITE_TABLE} USING gin(document)")
        )
        conn.execute(
            text(
                f"CREATE INDEX IF NOT EXISTS ix_{SQLITE_TABLE}_subject ON {SQLITE_TABLE} USING gin(subject_tsv)"
            )
        )
        # With the default statistics (the 1,000 most common lexemes), every rarer word is estimated to
        # match 0.5% of the archive, so "newest first, LIMIT 31" walks the date index testing each message:
        # seconds for a rare word in a large archive. The largest statistics target (100,000 lexemes) makes
        # rare words look rare, and the GIN index is used for them.
        for column_name in ("document", "subject_tsv"):
            conn.execute(text(f"ALTER TABLE {SQLITE_TABLE} ALTER COLUMN {column_name} SET STATISTICS 10000"))


def drop_search_schema(conn: Connection) -> None:
    conn.execute(text(f"DROP TABLE IF EXISTS {SQLITE_TABLE}"))
    if conn.dialect.name != "sqlite":
        conn.execute(text(f"DROP TEXT SEARCH CONFIGURATION IF EXISTS {PG_CONFIG}"))
        for config, _stemmer in PG_STEM_CONFIGS.values():
            conn.execute(text(f"DROP TEXT SEARCH CONFIGURATION IF EXISTS {config}"))


# Built once: the ingest worker indexes every post. FTS5 honours OR REPLACE on the rowid (the old entry's
# terms are removed from the index), so adding and replacing are one statement.
_SQLITE_INDEX = text(
    f"INSERT OR REPLACE INTO {SQLITE_TABLE}(rowid, subject, body, author) VALUES (:pk, :subject, :body, :author)"
)


def index_message(session: Session, message: Message, *, body: str | None = None) -> None:
    """Add or replace ``message`` in the index, in the caller's transaction."""
    author = f"{message.from_name} {message.from_addr}".strip()
    content = message.new_text or message.body_text if body is None else body
    params = {"pk": message.id, "subject": message.subject or "", "body": content or "", "author": author}
    if session.get_bind().dialect.name == "sqlite":
        session.execute(_SQLITE_INDEX, params)
    else:
        params["stem"] = pg_stem_config(f"{params['subject']}\n{params['body']}")
        subject_tsv, document = pg_document_sql(":subject", ":body", ":author", ":stem")
        session.execute(
            text(
                f"INSERT INTO {SQLITE_TABLE}(message_pk, subject_tsv, document) VALUES (:pk, {subject_tsv},"
                f" {document}) ON CONFLICT (message_pk) DO UPDATE SET subject_tsv = EXCLUDED.subject_tsv,"
                " document = EXCLUDED.document"
            ),
            params,
        )


def guess_language(value: str) -> str | None:
    """"fr", "de", "it", "es" or "en" from the function words of ``value``; None when too few to tell."""
    from .text import strip_accents

    counts = dict.fromkeys(_FUNCTION_WORDS, 0)
    for word in _WORD.findall(strip_accents(value[:_GUESS_CHARS].lower())):
        for language, words in _FUNCTION_WORDS.items():
            if word in words:
                counts[language] += 1
    best = max(counts, key=lambda k: counts[k])
    return best if counts[best] >= 2 else None


def pg_stem_config(value: str) -> str:
    """The stemming configuration for a text in PostgreSQL (the plain one when its language is unknown)."""
    language = guess_language(value)
    return PG_STEM_CONFIGS[language][0] if language else PG_CONFIG


def pg_document_sql(subject: str, body: str, author: str, stem: str) -> tuple[str, str]:
    """SQL for (subject_tsv, document) in PostgreSQL from SQL expressions of the subject, body, author and
    stemming configuration name: bound parameters in index_message, columns in a bulk INSERT ... SELECT."""
    def both(field: str, weight: str) -> str:
        # The words as written (accents folded) and, when the language is known, their stems.
        return (f"setweight(to_tsvector('{PG_CONFIG}', {field}), '{weight}') ||"
                f" setweight(to_tsvector(CAST({stem} AS regconfig), {field}), '{weight}')")

    subject_tsv = f"to_tsvector('{PG_CONFIG}', {subject}) || to_tsvector(CAST({stem} AS regconfig), {subject})"
    return subject_tsv, f"{both(subject, 'A')} || {both(body, 'B')} || {both(author, 'C')}"


def unindex_message(session: Session, message_pk: int) -> None:
    column_name = "rowid" if session.get_bind().dialect.name == "sqlite" else "message_pk"
    session.execute(text(f"DELETE FROM {SQLITE_TABLE} WHERE {column_name} = :pk"), {"pk": message_pk})


# --------------------------------------------------------------------------------------------------------
# Query side
# --------------------------------------------------------------------------------------------------------


class SearchError(ValueError):
    """A query that cannot be run (an unknown order or status, a page out of range...)."""


@dataclass(frozen=True)
class Term:
    """One word, prefix (``fiscal*``) or phrase (``"zone bleue"``), possibly negated (``-bus``)."""

    words: tuple[str, ...]
    prefix: bool = False
    negated: bool = False


def parse_terms(value: str) -> tuple[Term, ...]:
    """Split what a reader typed into terms; anything that is not a letter or digit only separates words.

    Quotes make a phrase, a leading ``-`` excludes, a trailing ``*`` searches a prefix. Nothing the reader
    types reaches the index's own query language: terms are rebuilt from words only.
    """
    terms: list[Term] = []
    for match in _TOKEN.finditer(value or ""):
        negated = bool(match.group(1) or match.group(3))
        raw = match.group(2) if match.group(2) is not None else match.group(4)
        words = tuple(w[:MAX_WORD_LENGTH] for w in _WORD.findall(raw))
        if not words:
            continue
        prefix = match.group(4) is not None and raw.endswith("*") and len(words) == 1
        terms.append(Term(words=words, prefix=prefix, negated=negated))
        if len(terms) >= MAX_TERMS:
            break
    return tuple(terms)


@dataclass(frozen=True)
class SearchQuery:
    """What to look for, and what the reader may see.

    ``text``: the simple search box. Criteria: ``author`` (words of a name or address), ``organisation_id``,
    ``country`` (ISO 3166 alpha-2 of the author's organisation), ``border`` ("DE-FR"), ``category_id``,
    ``tag``, ``status`` (open, answered, closed, escalated), ``date_from``/``date_to`` (inclusive days,
    UTC), ``titles_only`` (match topic titles only: one hit per topic). ``order``: "date" (newest first)
    or "relevance".

    Visibility: ``member_list_ids`` are the lists whose topics the reader may read in full (the lists they
    are a member of); ``see_everything`` is for moderators' and internal use. Everything else is readable
    only where the category (or, without category, the list) is open to the public in full.
    """

    text: str = ""
    author: str = ""
    organisation_id: int | None = None
    country: str = ""
    border: str = ""
    category_id: int | None = None
    tag: str = ""
    status: str = ""
    date_from: date | None = None
    date_to: date | None = None
    titles_only: bool = False
    order: str = "date"
    list_id: int | None = None
    page: int = 1
    page_size: int = 30
    member_list_ids: frozenset[int] = field(default_factory=frozenset)
    see_everything: bool = False
    # List without any word or criterion (feeds of the latest messages) instead of returning nothing.
    browse: bool = False

    @property
    def terms(self) -> tuple[Term, ...]:
        return parse_terms(self.text)

    @property
    def author_terms(self) -> tuple[Term, ...]:
        return tuple(replace(t, negated=False) for t in parse_terms(self.author))

    @property
    def has_text(self) -> bool:
        return any(not t.negated for t in self.terms)

    @property
    def needs_full_access(self) -> bool:
        """Criteria answerable only from topics the reader may read in full: who wrote (author, organisation,
        country, border) and tags, which public readers of a titles-only category do not see."""
        return bool(self.author_terms or self.organisation_id or self.country or self.border or self.tag)

    @property
    def is_empty(self) -> bool:
        """Nothing to search for: no words and no criteria (a search would list the whole archive)."""
        return not (
            self.browse
            or self.has_text
            or self.author_terms
            or self.organisation_id
            or self.country
            or self.border
            or self.category_id
            or self.tag
            or self.status
            or self.date_from
            or self.date_to
        )

    def validate(self) -> None:
        if self.order not in ORDERS:
            raise SearchError(f"unknown order {self.order!r} (expected one of {', '.join(ORDERS)})")
        if self.status and self.status not in STATUS_FILTERS:
            raise SearchError(f"unknown status {self.status!r} (expected one of {', '.join(STATUS_FILTERS)})")
        if not 1 <= self.page <= MAX_PAGE:
            raise SearchError(f"page must be between 1 and {MAX_PAGE}")
        if not 1 <= self.page_size <= 200:
            raise SearchError("page_size must be between 1 and 200")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise SearchError("the start date is after the end date")


@dataclass(frozen=True)
class SearchHit:
    message_pk: int
    message_id: str
    topic_id: int
    topic_subject: str
    topic_status: str
    topic_outcome: str | None
    escalation_level: str | None
    category_id: int | None
    category_name: str
    date: datetime
    # False: the reader sees this topic's title only; every field below is then empty.
    readable: bool
    subject: str = ""
    author_name: str = ""
    author_address: str = ""
    subject_html: str = ""
    snippet_html: str = ""
    # The relevance score when the page is ordered by relevance (bm25: lower is better; PostgreSQL's
    # ts_rank_cd: higher is better); 0.0 newest first.
    rank: float = 0.0


@dataclass(frozen=True)
class SearchPage:
    query: SearchQuery
    hits: tuple[SearchHit, ...]
    page: int
    has_next: bool

    @property
    def has_prev(self) -> bool:
        return self.page > 1


def highlight_html(value: str) -> str:
    """Escape ``value`` for HTML and turn the highlight markers into ``<mark>`` elements."""
    escaped = html.escape(value, quote=True)
    # Markers the text itself contained (a private-use character in a mail) must not unbalance the tags.
    if escaped.count(MARK_START) != escaped.count(MARK_END):
        return escaped.replace(MARK_START, "").replace(MARK_END, "")
    return escaped.replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")


def _fts5_term(term: Term) -> str:
    phrase = '"' + " ".join(term.words) + '"'
    return phrase + "*" if term.prefix else phrase


def fts5_expression(terms: Sequence[Term], *, column_name: str | None = None) -> str | None:
    """An FTS5 MATCH expression built from words only (each quoted, so no FTS5 syntax comes from readers)."""
    positive = [_fts5_term(t) for t in terms if not t.negated]
    if not positive:
        return None
    expr = " AND ".join(positive)
    negative = [_fts5_term(t) for t in terms if t.negated]
    if negative:
        expr = f"({expr}) NOT " + " NOT ".join(negative)
    if column_name:
        expr = f"{{{column_name}}} : ({expr})"
    return expr


def _tsquery_term(term: Term, weight: str = "") -> str:
    # Words are letters and digits only (see _WORD): they can be quoted as lexemes without escaping.
    lexemes = [f"'{w}'" for w in term.words]
    if term.prefix:
        lexemes[-1] += ":*" + weight
    elif weight:
        lexemes = [f"{lex}:{weight}" for lex in lexemes]
    body = " <-> ".join(lexemes)
    return f"!({body})" if term.negated else f"({body})"


def tsquery_expression(terms: Sequence[Term], *, weight: str = "") -> str | None:
    """A to_tsquery() source built from words only; ``weight`` "A" restricts to subjects, "C" to authors."""
    if not any(not t.negated for t in terms):
        return None
    return " & ".join(_tsquery_term(t, weight) for t in terms)


def _to_tsquery(source: str) -> ColumnElement[Any]:
    plain = func.to_tsquery(literal_column(f"'{PG_CONFIG}'::regconfig"), literal(source))
    if "!" in source or ":*" in source:
        # With exclusions, OR-ing per-language forms would let a language in which an excluded word stems
        # differently readmit the message; a prefix is already a wildcard, and stemming it ("fronte*" ->
        # "front*") would widen it further. Such queries match the words as written only.
        return plain
    query = plain
    for config, _stemmer in PG_STEM_CONFIGS.values():
        query = query.op("||")(func.to_tsquery(literal_column(f"'{config}'::regconfig"), literal(source)))
    return query


def _day_start(value: date) -> datetime:
    return datetime.combine(value, time.min, tzinfo=UTC)


def search_messages(session: Session, query: SearchQuery) -> SearchPage:
    """One page of messages matching ``query`` that the reader may see, newest first or by relevance."""
    query.validate()
    if query.is_empty:
        return SearchPage(query=query, hits=(), page=query.page, has_next=False)
    dialect = session.get_bind().dialect.name
    sqlite = dialect == "sqlite"

    m = Message.__table__
    t = Topic.__table__
    c = Category.__table__
    lst = MailingList.__table__
    mb = Member.__table__
    org = Organisation.__table__
    m_first = aliased(Message)

    if query.see_everything:
        readable: ColumnElement[bool] = true()
    else:
        public_full = func.coalesce(c.c.public_access, lst.c.default_public_access) == "full"
        if query.member_list_ids:
            readable = or_(t.c.list_id.in_(sorted(query.member_list_ids)), public_full)
        else:
            readable = public_full
    # The topic's first message stands for the topic in titles-only hits.
    is_first = m.c.id == (
        select(func.min(m_first.id)).where(m_first.topic_id == m.c.topic_id).correlate(m).scalar_subquery()
    )

    fts = table(SEARCH_TABLE, column("rowid"), column("message_pk"), column("document"), column("subject_tsv"))
    join = m.join(t, t.c.id == m.c.topic_id).outerjoin(c, c.c.id == t.c.category_id).join(lst, lst.c.id == t.c.list_id)
    conditions: list[ColumnElement[bool]] = []
    params: dict[str, Any] = {}
    rank: ColumnElement[Any] = literal(0.0)

    terms = query.terms
    author_terms = query.author_terms
    match_expr: str | None = None
    subject_expr: str | None = None
    # SQLite, newest first: the index's matches are walked newest id first and the page is filled from
    # them (see _sqlite_walk) instead of joining, filtering and sorting every match.
    walk = False
    if sqlite:
        main = fts5_expression(terms, column_name="subject" if query.titles_only else None)
        author_expr = fts5_expression(author_terms, column_name="author") if author_terms else None
        parts = [p for p in (main, author_expr) if p]
        match_expr = " AND ".join(f"({p})" for p in parts) if parts else None
        subject_expr = fts5_expression(terms, column_name="subject")
        walk = match_expr is not None and query.order == "date"
        if match_expr and not walk:
            join = join.join(fts, fts.c.rowid == m.c.id)
            conditions.append(text(f"{SEARCH_TABLE} MATCH :match").bindparams(match=match_expr))
            rank = literal_column(f"bm25({SEARCH_TABLE}, 10.0, 1.0, 2.0)")
    else:
        main = tsquery_expression(terms, weight="A" if query.titles_only else "")
        author_expr = tsquery_expression(author_terms, weight="C") if author_terms else None
        parts = [p for p in (main, author_expr) if p]
        match_expr = " & ".join(f"({p})" for p in parts) if parts else None
        subject_expr = tsquery_expression(terms, weight="A")
        if match_expr:
            join = join.join(fts, fts.c.message_pk == m.c.id)
            conditions.append(fts.c.document.op("@@")(_to_tsquery(match_expr)))
            rank = func.ts_rank_cd(fts.c.document, _to_tsquery(match_expr))

    # Where the reader sees titles only: the topic's first message, matched on its title alone, and never
    # through criteria about people or tags (they would tell who wrote in a topic whose authors are private).
    if query.needs_full_access:
        title_only_rows: ColumnElement[bool] = false()
    elif query.has_text and not query.titles_only:
        assert subject_expr is not None
        if sqlite:
            # Tested row by row (FTS5 looks the rowid up in the subject's doclists), only for the rows that
            # are not readable: no list of every title matching a common word is built.
            subject_match = text(
                f"EXISTS (SELECT 1 FROM {SEARCH_TABLE} AS subject_fts WHERE"
                f" subject_fts.{SEARCH_TABLE} MATCH :subject_match"
                " AND subject_fts.rowid = messages.id)"
            ).bindparams(subject_match=subject_expr)
        else:
            # The subject's own (small) vector, not the document's A-weighted part: the same words at the same
            # positions, and the sort under "newest first" then does not carry every match's document.
            subject_words = tsquery_expression(terms)
            assert subject_words is not None
            subject_match = fts.c.subject_tsv.op("@@")(_to_tsquery(subject_words))
        title_only_rows = and_(is_first, subject_match)
    else:
        title_only_rows = is_first
    if not query.see_everything:
        conditions.append(or_(readable, title_only_rows))
    if query.titles_only:
        conditions.append(is_first)

    if query.list_id is not None:
        conditions.append(t.c.list_id == query.list_id)
    if query.category_id is not None:
        conditions.append(t.c.category_id == query.category_id)
    if query.tag:
        conditions.append(
            t.c.id.in_(
                select(topic_tags.c.topic_id)
                .join(Tag.__table__, Tag.__table__.c.id == topic_tags.c.tag_id)
                .where(Tag.__table__.c.name == query.tag.strip().lower())
            )
        )
    if query.status == "escalated":
        conditions.append(t.c.escalation_level.is_not(None))
    elif query.status:
        conditions.append(t.c.status == query.status)
    if query.organisation_id or query.country or query.border:
        people = select(mb.c.id).join(org, org.c.id == mb.c.organisation_id)
        if query.organisation_id:
            people = people.where(org.c.id == query.organisation_id)
        if query.country:
            people = people.where(org.c.country == query.country.strip().upper())
        if query.border:
            people = people.where(org.c.border == query.border.strip().upper())
        conditions.append(m.c.author_id.in_(people))
    if query.date_from:
        conditions.append(m.c.date >= _day_start(query.date_from))
    if query.date_to:
        conditions.append(m.c.date < _day_start(query.date_to + timedelta(days=1)))

    if query.order != "relevance":
        # The score is computed for the order only (bm25's statistics cost a pass over every match).
        rank = literal(0.0)
    stmt = (
        select(
            m.c.id,
            m.c.message_id,
            m.c.topic_id,
            m.c.date,
            m.c.from_name,
            m.c.from_addr,
            m.c.subject,
            t.c.subject.label("topic_subject"),
            t.c.status,
            t.c.outcome,
            t.c.escalation_level,
            c.c.id.label("category_id"),
            c.c.name.label("category_name"),
            readable.label("readable"),
            rank.label("rank"),
        )
        .select_from(join)
        .where(*conditions)
    )
    offset = (query.page - 1) * query.page_size
    if walk:
        assert match_expr is not None
        oldest = _day_start(query.date_from) if query.date_from else None
        rows = _sqlite_walk(session, stmt, match_expr, offset + query.page_size + 1, oldest=oldest)[offset:]
    else:
        if query.order == "relevance" and match_expr:
            # bm25() is lower for better matches; ts_rank_cd higher.
            stmt = stmt.order_by(rank if sqlite else rank.desc(), m.c.date.desc(), m.c.id.desc())
        else:
            stmt = stmt.order_by(m.c.date.desc(), m.c.id.desc())
        stmt = stmt.limit(query.page_size + 1).offset(offset)
        rows = list(session.execute(stmt, params).all())
    has_next = len(rows) > query.page_size
    rows = rows[: query.page_size]

    readable_pks = [r.id for r in rows if r.readable]
    snippets = _snippets(session, readable_pks, sqlite=sqlite, terms=terms)
    hits = []
    for r in rows:
        if r.readable:
            subject_html, snippet_html = snippets.get(r.id, (html.escape(r.subject or ""), ""))
            hits.append(
                SearchHit(
                    message_pk=r.id, message_id=r.message_id, topic_id=r.topic_id, topic_subject=r.topic_subject,
                    topic_status=r.status, topic_outcome=r.outcome, escalation_level=r.escalation_level,
                    category_id=r.category_id, category_name=r.category_name or "", date=_aware(r.date),
                    readable=True, subject=r.subject or "", author_name=r.from_name or "",
                    author_address=r.from_addr or "",
                    subject_html=subject_html, snippet_html=snippet_html, rank=float(r.rank or 0.0),
                )
            )
        else:
            hits.append(
                SearchHit(
                    message_pk=r.id, message_id=r.message_id, topic_id=r.topic_id, topic_subject=r.topic_subject,
                    topic_status=r.status, topic_outcome=r.outcome, escalation_level=r.escalation_level,
                    category_id=r.category_id, category_name=r.category_name or "", date=_aware(r.date),
                    readable=False,
                )
            )
    return SearchPage(query=query, hits=tuple(hits), page=query.page, has_next=has_next)


# Matches read from the index per round of the walk: the first round's size, and the most one round reads.
_WALK_FIRST = 256
_WALK_MOST = 32768
_MAX_ROWID = 2**63 - 1


def _sqlite_walk(
    session: Session, stmt: Any, match_expr: str, need: int, *, oldest: datetime | None = None
) -> list[Any]:
    """The ``need`` newest rows of ``stmt`` (which has every condition but the full-text match) among the
    messages matching ``match_expr``, newest first (date, then id).

    The index gives its matches by descending rowid (the message's id) without sorting, a round at a time;
    each round's ids go through ``stmt``'s visibility and criteria. Ids follow arrival, not the Date header
    (an archive imported later is older than the posts before it), so the walk stops only when no message
    below the lowest id read is newer than the ``need``-th row kept: then no match left unread can belong
    on the page. In an archive whose ids mostly follow dates that comes after a round or two; otherwise
    the walk reads on, in larger rounds, up to every match (what sorting them all would have cost).
    With ``oldest`` (the search's start date), it also stops when no message below is that recent: a page
    that a start date leaves short does not read every older match.
    """
    matches = text(
        f"SELECT rowid FROM {SEARCH_TABLE} WHERE {SEARCH_TABLE} MATCH :match AND rowid < :below"
        " ORDER BY rowid DESC LIMIT :size"
    )
    in_round = stmt.where(text("messages.id IN (SELECT value FROM json_each(:round_ids))"))
    m = Message.__table__
    # The unary + keeps SQLite off the primary key here: the date index is walked from the newest message
    # down to the need-th row's date, and stops at the first message with a lower id.
    below_clause = text("+messages.id < :below")
    newer_below = (
        select(literal(1)).where(m.c.date > bindparam("kth_date", type_=m.c.date.type)).where(below_clause).limit(1)
    )
    in_range_below = (
        select(literal(1)).where(m.c.date >= bindparam("oldest", type_=m.c.date.type)).where(below_clause).limit(1)
    )
    kept: list[Any] = []
    below = _MAX_ROWID
    size = min(max(_WALK_FIRST, 4 * need), _WALK_MOST)
    while True:
        ids = session.execute(matches, {"match": match_expr, "below": below, "size": size}).scalars().all()
        if ids:
            kept.extend(session.execute(in_round, {"round_ids": json.dumps(ids)}).all())
            kept.sort(key=lambda r: (r.date, r.id), reverse=True)
            del kept[need:]
        if len(ids) < size:
            return kept  # every match was read
        below = ids[-1]
        if len(kept) >= need:
            if session.execute(newer_below, {"kth_date": kept[-1].date, "below": below}).first() is None:
                return kept
        elif oldest is not None and session.execute(in_range_below, {"oldest": oldest, "below": below}).first() is None:
            return kept
        size = min(size * 4, _WALK_MOST)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _snippets(
    session: Session, pks: Sequence[int], *, sqlite: bool, terms: Sequence[Term]
) -> dict[int, tuple[str, str]]:
    """(subject_html, snippet_html) of each readable hit, computed for the page's rows only."""
    if not pks:
        return {}
    out: dict[int, tuple[str, str]] = {}
    positive = [t for t in terms if not t.negated]
    if sqlite:
        expr = fts5_expression(positive)
        if expr:
            # Highlight every term in every column: OR the terms so that a hit found through its subject
            # still shows its body, and a body snippet shows every word that is there.
            any_expr = " OR ".join(_fts5_term(t) for t in positive)
            rows = session.execute(
                text(
                    f"SELECT rowid AS pk, highlight({SEARCH_TABLE}, 0, :a, :b) AS subject,"
                    f" snippet({SEARCH_TABLE}, 1, :a, :b, '…', 24) AS body"
                    f" FROM {SEARCH_TABLE} WHERE {SEARCH_TABLE} MATCH :q AND rowid IN :pks"
                ).bindparams(bindparam("pks", expanding=True)),
                {"a": MARK_START, "b": MARK_END, "q": any_expr, "pks": list(pks)},
            ).all()
            for r in rows:
                body = r.body or ""
                out[r.pk] = (highlight_html(r.subject or ""), highlight_html(body) if MARK_START in body else "")
    else:
        expr = " | ".join(_tsquery_term(t) for t in positive)
        if expr:
            options = f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=30, MinWords=12, MaxFragments=2"
            rows = session.execute(
                text(
                    f"SELECT id AS pk, ts_headline('{PG_CONFIG}', subject, to_tsquery('{PG_CONFIG}', :q),"
                    " 'HighlightAll=true, StartSel=' || :a || ', StopSel=' || :b) AS subject,"
                    f" ts_headline('{PG_CONFIG}', coalesce(nullif(new_text, ''), body_text),"
                    f" to_tsquery('{PG_CONFIG}', :q), :options) AS body"
                    " FROM messages WHERE id IN :pks"
                ).bindparams(bindparam("pks", expanding=True)),
                {"q": expr, "a": MARK_START, "b": MARK_END, "options": options, "pks": list(pks)},
            ).all()
            for r in rows:
                body = r.body or ""
                out[r.pk] = (highlight_html(r.subject or ""), highlight_html(body) if MARK_START in body else "")
    # Hits without a highlighted body (found through criteria, or through their subject only) show the
    # beginning of their text instead.
    missing = [pk for pk in pks if not out.get(pk, ("", ""))[1]]
    if missing:
        rows = session.execute(
            select(Message.id, Message.subject, Message.new_text, Message.body_text).where(Message.id.in_(missing))
        ).all()
        for r in rows:
            subject_html = out.get(r.id, (html.escape(r.subject or ""), ""))[0]
            body = (r.new_text or r.body_text or "").strip()
            snippet = " ".join(body[: SNIPPET_FALLBACK_CHARS * 2].split())[:SNIPPET_FALLBACK_CHARS]
            if len(body) > len(snippet):
                snippet += "…"
            out[r.id] = (subject_html, html.escape(snippet))
    return out
