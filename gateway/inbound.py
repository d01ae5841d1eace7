"""The durable inbound spool: every entry point (SMTP, IMAP, web, import) hands raw bytes here.

SMTP answers 250 only after :func:`spool_message` returned: from then on the message cannot be lost,
whatever happens to the process. Workers claim rows, process them and mark them done in the same
transaction as the archive writes (gateway.worker).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from passerelle.models import InboundMessage

log = logging.getLogger(__name__)

# Enough of the header block to find the Message-ID without parsing the whole message (RFC 5322 headers
# end at the first empty line; folded continuation lines start with white space).
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_HEADER_SCAN_BYTES = 64 * 1024


def sniff_message_id(raw: bytes) -> str:
    """The Message-ID header's value without brackets, or "" (for logs and the operators' view only)."""
    head = raw[:_HEADER_SCAN_BYTES]
    end = re.search(rb"\r?\n\r?\n", head)
    if end:
        head = head[: end.start()]
    match = _MESSAGE_ID.search(head)
    if not match:
        return ""
    value = match.group(1).decode("ascii", "replace").strip()
    inner = re.search(r"<([^<>]+)>", value)
    return (inner.group(1) if inner else value).strip()[:995]


_INSERT_ROW = insert(InboundMessage.__table__)


def _row_values(
    raw: bytes, *, source: str, envelope_from: str, targets: Sequence[tuple[str, Sequence[str]]], now: datetime
) -> list[dict[str, Any]]:
    """The columns of one spool row per (list name, envelope recipients of that address)."""
    message_id = sniff_message_id(raw)
    return [
        {
            "received_at": now,
            "source": source[:80],
            "envelope_from": envelope_from[:320],
            "envelope_to": [str(a)[:320] for a in envelope_to],
            "list_name": list_name[:64],
            "message_id_header": message_id,
            "size": len(raw),
            "raw": raw,
            "status": "new",
            "attempts": 0,
            "reason": "",
        }
        for list_name, envelope_to in targets
    ]


def spool_message(
    factory: sessionmaker[Session],
    raw: bytes,
    *,
    source: str,
    envelope_from: str,
    envelope_to: Sequence[str],
    list_name: str,
    now: datetime,
) -> int:
    """Commit ``raw`` to the spool in its own transaction and return the row id.

    Raises whatever the database raises (the SMTP layer turns that into 451: try again later).
    """
    return spool_for_lists(
        factory, raw, source=source, envelope_from=envelope_from, targets=[(list_name, envelope_to)], now=now
    )[0]


def spool_for_lists(
    factory: sessionmaker[Session],
    raw: bytes,
    *,
    source: str,
    envelope_from: str,
    targets: Sequence[tuple[str, Sequence[str]]],
    now: datetime,
) -> list[int]:
    """Commit one spool row per (list name, envelope recipients of that address) in ONE transaction.

    An envelope naming several of our addresses (forum@ and forum-dev@, or forum@ and forum-request@) gets
    one row each, so each is processed as what it was sent to; all or none are stored, so that the 451
    answered on failure never leaves half of them behind to be duplicated by the sender's retry.
    """
    if not targets:
        raise ValueError("spool_for_lists needs at least one target")
    values = _row_values(raw, source=source, envelope_from=envelope_from, targets=targets, now=now)
    # Plain INSERTs on a connection, no ORM session: the SMTP handler answers 250 after this commit, and
    # nothing here needs ORM objects (a session costs more than the insert).
    session = factory()
    try:
        engine = session.get_bind()
    finally:
        session.close()
    with engine.begin() as conn:
        row_ids = [conn.execute(_INSERT_ROW, row).inserted_primary_key[0] for row in values]
    message_id = values[0]["message_id_header"]
    log.info(
        "spooled inbound %s from %s (%d bytes) message-id=<%s>",
        ", ".join(f"#{i}" for i in row_ids), source, len(raw), message_id,
    )
    return row_ids


def add_spool_rows(
    session: Session,
    raw: bytes,
    *,
    source: str,
    envelope_from: str,
    targets: Sequence[tuple[str, Sequence[str]]],
    now: datetime,
    flush: bool = True,
) -> list[InboundMessage]:
    """Add one spool row per (list name, envelope recipients) inside the caller's transaction.

    For entry points that must commit something else atomically with the spool row: the IMAP reader
    commits its UID cursor in the same transaction, so that a crash can neither lose nor repeat a message.
    Rows get their ids at the flush (``flush=False``: at the caller's, one INSERT for many rows).
    """
    if not targets:
        raise ValueError("add_spool_rows needs at least one target")
    rows = [
        InboundMessage(**row)
        for row in _row_values(raw, source=source, envelope_from=envelope_from, targets=targets, now=now)
    ]
    session.add_all(rows)
    if flush:
        session.flush()
    return rows
