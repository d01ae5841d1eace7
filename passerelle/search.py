"""Full-text search behind one interface: SQLite FTS5 by default, PostgreSQL full text at scale.

The index holds one row per archived message, keyed by the message's primary key: its subject, its new
text (quotes and signatures trimmed, so a reply does not match on what it quotes) and its author.
Accent- and case-insensitive: "fiscalite" finds "fiscalité" (FTS5 unicode61 remove_diacritics 2;
PostgreSQL unaccent).
"""

from __future__ import annotations

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from .models import Message

SQLITE_TABLE = "message_search"


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


def drop_search_schema(conn: Connection) -> None:
    conn.execute(text(f"DROP TABLE IF EXISTS {SQLITE_TABLE}"))


def index_message(session: Session, message: Message, *, body: str | None = None) -> None:
    """Add or replace ``message`` in the index, in the caller's transaction."""
    author = f"{message.from_name} {message.from_addr}".strip()
    content = message.new_text or message.body_text if body is None else body
    params = {"pk": message.id, "subject": message.subject or "", "body": content or "", "author": author}
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text(f"DELETE FROM {SQLITE_TABLE} WHERE rowid = :pk"), params)
        session.execute(
            text(f"INSERT INTO {SQLITE_TABLE}(rowid, subject, body, author) VALUES (:pk, :subject, :body, :author)"),
            params,
        )
    else:
        session.execute(
            text(
                f"INSERT INTO {SQLITE_TABLE}(message_pk, subject_tsv, document) VALUES (:pk,"
                " to_tsvector('simple', unaccent(:subject)),"
                " setweight(to_tsvector('simple', unaccent(:subject)), 'A') ||"
                " setweight(to_tsvector('simple', unaccent(:body)), 'B') ||"
                " setweight(to_tsvector('simple', unaccent(:author)), 'C'))"
                " ON CONFLICT (message_pk) DO UPDATE SET subject_tsv = EXCLUDED.subject_tsv,"
                " document = EXCLUDED.document"
            ),
            params,
        )


def unindex_message(session: Session, message_pk: int) -> None:
    column = "rowid" if session.get_bind().dialect.name == "sqlite" else "message_pk"
    session.execute(text(f"DELETE FROM {SQLITE_TABLE} WHERE {column} = :pk"), {"pk": message_pk})
