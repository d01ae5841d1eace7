"""Obstacle/Solution and Good practice sheets: pre-filled from a topic, validated, versioned, published.

A moderator turns a topic into a sheet with ``#sheet obstacle`` / ``#sheet practice`` (gateway.commands
calls :func:`create_sheet_from_topic`) or from the web archive (archive_web.sheets). The sheet starts as a
draft pre-filled from the topic:

* title: the topic's subject without reply prefixes;
* countries and border: from the organisations of the people who took part;
* category: the topic's category;
* obstacle: what the first message says (its own words: quotes and signature trimmed);
* solution: the closing messages — the last messages before the topic was closed — trimmed the same way
  (passerelle.mail.quotes.split_reply), each introduced by its author;
* legal references: the laws, articles, directives and regulations the messages name;
* contacts: the participants and their organisations (never their addresses: a sheet may be public);
* competent level and solution status: from the topic's escalation and outcome.

Every save is a :class:`SheetVersion`; ``Sheet.data`` is a copy of the newest version's fields. This module
knows nothing of the web: validation returns error codes that the web archive translates.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, undefer

from passerelle.config import Settings
from passerelle.mail.quotes import split_reply
from passerelle.mail.subject import normalize_subject
from passerelle.models import Member, Message, ModerationAction, Organisation, Sheet, SheetVersion, Topic
from passerelle.models.sheet import KINDS, LEVELS, STATUSES
from passerelle.overview import spreadsheet_safe

log = logging.getLogger(__name__)

# What is known of a solution: found, partial, still pending (study, escalation), or none (a legal
# impossibility); "" when not said.
SOLUTION_STATUSES = ("found", "partial", "pending", "none")
OUTCOME_TO_SOLUTION = {"solved": "found", "study-needed": "pending", "legal-impossibility": "none"}

TITLE_MAX = 300
# Field name -> (kind, maximum length). Kinds: "line" (one line), "text" (several lines), "choice",
# "countries", "border".
FIELD_SPECS: dict[str, tuple[str, int]] = {
    "obstacle": ("text", 20_000),
    "domain": ("line", 300),
    "level": ("choice", 20),
    "solution": ("text", 20_000),
    "solution_status": ("choice", 20),
    "legal_references": ("text", 10_000),
    "contacts": ("text", 5_000),
    "countries": ("countries", 200),
    "border": ("border", 40),
    "category": ("line", 120),
}
FIELDS: tuple[str, ...] = tuple(FIELD_SPECS)
CHOICES: dict[str, tuple[str, ...]] = {"level": LEVELS, "solution_status": SOLUTION_STATUSES}

# The columns of the CSV export, in order (the JSON export has the same keys, countries as a list).
EXPORT_COLUMNS: tuple[str, ...] = (
    "id", "kind", "status", "title", "category", "countries", "border", "domain", "level", "obstacle",
    "solution_status", "solution", "legal_references", "contacts", "topic_id", "version", "created_at",
    "updated_at", "published_at", "url", "topic_url",
)
# What readers who may see only the title of a sheet get in exports.
TITLE_ONLY_COLUMNS: frozenset[str] = frozenset(
    {"id", "kind", "status", "title", "category", "topic_id", "published_at", "url", "topic_url"}
)

COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
BORDER_RE = re.compile(r"^[A-Z]{2}(?:-[A-Z]{2})+$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")

# How much of the thread a pre-filled sheet quotes.
CLOSING_MESSAGES = 2
EXCERPT_CHARS = 4_000
MAX_LEGAL_REFERENCES = 20

# Legal references as people write them in the five languages: articles of codes and laws, EU directives
# and regulations with their numbers, French "loi n°" / "décret n°", conventions. Matches are kept as
# written; the moderator edits the list.
_LEGAL_RE = re.compile(
    r"""
    \b(?:directive|richtlinie|direttiva|directiva)\s+
        (?:\((?:UE|EU|CE|EG|CEE|EWG)\)\s*)?(?:n[°o.º]\s*|nr\.?\s*)?\d{2,4}/\d{1,4}(?:/(?:UE|EU|CE|EG|CEE|EWG))?
  | \b(?:r[èe]glement|regulation|verordnung|regolamento|reglamento)\s+
        \((?:UE|EU|CE|EG|CEE|EWG)\)\s*(?:n[°o.º]\s*|nr\.?\s*)?\d{1,4}/\d{1,4}
  | \b(?:loi|d[ée]cret|ordonnance|arr[êe]t[ée])\s+n[°o.º]\s*[\d][\d\-/.]*\d
  | \b(?:art(?:icle|ikel|icolo|[íi]culo)?s?\.?)\s+(?:[LRD]\.?\s*)?\d+[a-z]?(?:[\-.]\d+)*
        (?:\s+(?:(?:du|de\s+la|des|of\s+the|der|del|della|dello|de)\s+|de\s+l['’]\s*)
           (?:(?!(?:et|and|und|ou|or|oder|sont|est|is|ist|e|y|o)\b)[^\W\d_][\w'’\-]*[ \t]*){1,4})?
  | \b(?:convention|abkommen|accord|convenzione|convenio)\s+(?:fiscale\s+)?(?:franco|germano|belgo|italo|hispano|
        luxembourgeois|franco-[a-zé]+|[a-zé]+-(?:allemande|belge|suisse|luxembourgeoise|italienne|espagnole))
        [a-zé\-]*(?:\s+du\s+\d{1,2}\s+\w+\s+\d{4})?
    """,
    re.IGNORECASE | re.VERBOSE,
)


class SheetError(ValueError):
    """A sheet operation that cannot be done (unknown kind, topic of another list...)."""


@dataclass(frozen=True)
class FieldError:
    """A bad field: ``code`` is one of required, too_long, invalid_characters, bad_choice, bad_country,
    bad_border, unknown_category, not_a_list; ``limit`` the maximum length for too_long, ``value`` the
    offending part (shortened)."""

    field: str
    code: str
    limit: int = 0
    value: str = ""


# ============================================================================================ pre-fill


def _trimmed(message: Message) -> str:
    """The author's own words: quoted text, attribution lines and signature removed."""
    text = message.body_text or ""
    try:
        own = split_reply(text).new_text
    except Exception:  # the quote detector never raises by contract; a bug there must not lose a sheet
        log.exception("quote trimming failed for <%s>", message.message_id)
        own = message.new_text or text
    own = own or message.new_text or ""
    return own.strip()


def _shorten(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit("\n", 1)[0] if "\n" in text[:limit] else text[:limit]
    return cut.rstrip() + " […]"


def _author_line(message: Message) -> str:
    author = message.author
    name = (author.name if author and author.name else message.from_name) or ""
    org = author.organisation.name if author and author.organisation else ""
    who = ", ".join(p for p in (name, org) if p) or "—"
    return f"— {who} ({message.date:%Y-%m-%d})"


def legal_references(texts: Sequence[str]) -> list[str]:
    """The legal references named in ``texts``, in order of first appearance, without duplicates."""
    found: list[str] = []
    seen: set[str] = set()
    for text in texts:
        for match in _LEGAL_RE.finditer(text or ""):
            ref = " ".join(match.group(0).split()).rstrip(" .,;:")
            key = ref.lower()
            if key not in seen:
                seen.add(key)
                found.append(ref)
            if len(found) >= MAX_LEGAL_REFERENCES:
                return found
    return found


def prefill(session: Session, topic: Topic) -> tuple[str, dict[str, Any]]:
    """(title, fields) of a new sheet about ``topic``, from its messages and participants."""
    messages = list(
        session.scalars(
            select(Message)
            .where(Message.topic_id == topic.id)
            .options(undefer(Message.body_text), undefer(Message.new_text))
            .order_by(Message.date, Message.id)
        )
    )
    title = normalize_subject(topic.subject) or topic.subject or f"#{topic.id}"
    texts = {m.id: _trimmed(m) for m in messages}

    participants: list[Member] = []
    for m in messages:
        if m.author is not None and m.author not in participants:
            participants.append(m.author)
    orgs: list[Organisation] = []
    for p in participants:
        if p.organisation is not None and p.organisation not in orgs:
            orgs.append(p.organisation)
    countries = sorted({o.country.upper() for o in orgs if o.country and COUNTRY_RE.match(o.country.upper())})
    borders = Counter(o.border.upper() for o in orgs if o.border and BORDER_RE.match(o.border.upper()))
    if borders:
        border = borders.most_common(1)[0][0]
    elif len(countries) >= 2:
        border = "-".join(countries)
    else:
        border = ""

    obstacle = _shorten(texts.get(messages[0].id, ""), EXCERPT_CHARS * 2) if messages else ""

    # The closing messages: the last ones before the topic was closed (all of them while it is open),
    # the opening message excepted unless it is the only one.
    closing = [m for m in messages if topic.closed_at is None or m.received_at <= topic.closed_at]
    if len(closing) > 1:
        closing = closing[1:]
    chosen = [m for m in closing if texts.get(m.id)][-CLOSING_MESSAGES:]
    solution = "\n\n".join(f"{_author_line(m)}\n{_shorten(texts[m.id], EXCERPT_CHARS)}" for m in chosen)

    contacts = []
    for p in participants:
        parts = [p.name or ""]
        if p.organisation is not None:
            parts.append(f"{p.organisation.name} ({p.organisation.country})")
        line = ", ".join(x for x in parts if x)
        if line and line not in contacts:
            contacts.append(line)

    data: dict[str, Any] = {
        "obstacle": obstacle,
        "domain": "",
        "level": topic.escalation_level if topic.escalation_level in LEVELS else "",
        "solution": solution,
        "solution_status": OUTCOME_TO_SOLUTION.get(topic.outcome or "", ""),
        "legal_references": "\n".join(legal_references([texts[m.id] for m in messages])),
        "contacts": "\n".join(contacts),
        "countries": countries,
        "border": border,
        "category": topic.category.name if topic.category is not None else "",
    }
    return _shorten_title(title), normalize(data)


def _shorten_title(title: str) -> str:
    title = " ".join(title.split())
    return title if len(title) <= TITLE_MAX else title[: TITLE_MAX - 1] + "…"


def normalize(data: Mapping[str, Any]) -> dict[str, Any]:
    """Every field present, with its type: text fields as str, countries as a list of codes."""
    out: dict[str, Any] = {}
    for name in FIELDS:
        value = data.get(name)
        if name == "countries":
            if isinstance(value, str):
                value = [v for v in re.split(r"[\s,;]+", value.upper()) if v]
            out[name] = [str(v) for v in (value or [])]
        else:
            out[name] = "" if value is None else str(value)
    return out


def create_sheet_from_topic(
    session: Session,
    settings: Settings,
    topic: Topic,
    kind: str,
    actor: Member | None,
    *,
    now: datetime,
) -> Sheet:
    """A draft sheet of ``kind`` ("obstacle" or "practice") pre-filled from ``topic``, with its version 1.

    When the topic already has a sheet of that kind, that sheet is returned unchanged: a command sent twice,
    or a web form submitted twice, never makes two sheets of one topic.
    """
    if kind not in KINDS:
        raise SheetError(f"unknown kind of sheet {kind!r}: one of {', '.join(KINDS)}")
    existing = session.scalar(
        select(Sheet).where(Sheet.topic_id == topic.id, Sheet.kind == kind).order_by(Sheet.id).limit(1)
    )
    if existing is not None:
        log.info("topic #%s already has %s sheet #%s", topic.id, kind, existing.id)
        return existing
    title, data = prefill(session, topic)
    sheet = Sheet(
        topic_id=topic.id, list_id=topic.list_id, kind=kind, status="draft", title=title, data=data, version=1,
        created_at=now, updated_at=now, published_at=None,
    )
    session.add(sheet)
    session.flush()
    session.add(SheetVersion(sheet_id=sheet.id, number=1, title=title, data=data,
                             author_id=actor.id if actor else None, created_at=now))
    session.flush()
    log.info("%s sheet #%s created from topic #%s by %s", kind, sheet.id, topic.id,
             actor.email if actor else "(system)")
    return sheet


# ============================================================================================ validation


def _clean_text(value: str, *, multiline: bool) -> str:
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    if multiline:
        lines = [line.rstrip() for line in value.split("\n")]
        return "\n".join(lines).strip("\n").strip()
    return " ".join(value.split())


def validate(
    form: Mapping[str, Any],
    *,
    categories: Sequence[str] | None = None,
) -> tuple[str, dict[str, Any], list[FieldError]]:
    """(title, fields, errors) from submitted values (a form or a JSON object).

    ``categories``: the category names allowed (None: any). Values are cleaned (line ends, spaces,
    upper-case codes); every bad field gives a :class:`FieldError`, the others are still returned so that
    a form shown again keeps what was typed.
    """
    errors: list[FieldError] = []

    def text_of(name: str) -> str:
        value = form.get(name, "")
        if value is None:
            return ""
        if isinstance(value, (list, tuple)):
            if name == "countries":
                return ",".join(str(v) for v in value)
            errors.append(FieldError(name, "not_a_list"))
            return ""
        return str(value)

    raw_title = text_of("title")
    title = _clean_text(raw_title, multiline=False)
    if not title:
        errors.append(FieldError("title", "required"))
    elif len(title) > TITLE_MAX:
        errors.append(FieldError("title", "too_long", limit=TITLE_MAX))
    elif _LINE_CONTROL.search(title):
        errors.append(FieldError("title", "invalid_characters"))

    data: dict[str, Any] = {}
    for name, (kind, limit) in FIELD_SPECS.items():
        raw = text_of(name)
        if kind == "countries":
            codes = [c for c in re.split(r"[\s,;/]+", raw.strip().upper()) if c]
            bad = [c for c in codes if not COUNTRY_RE.match(c)]
            if len(raw) > limit:
                errors.append(FieldError(name, "too_long", limit=limit))
            elif bad:
                errors.append(FieldError(name, "bad_country", value=bad[0][:20]))
            data[name] = sorted(dict.fromkeys(codes)) if not bad else codes[:30]
            continue
        cleaned = _clean_text(raw, multiline=kind == "text")
        data[name] = cleaned
        if len(cleaned) > limit:
            errors.append(FieldError(name, "too_long", limit=limit))
            continue
        pattern = _CONTROL if kind == "text" else _LINE_CONTROL
        if pattern.search(cleaned):
            errors.append(FieldError(name, "invalid_characters"))
            continue
        if kind == "choice" and cleaned and cleaned not in CHOICES[name]:
            errors.append(FieldError(name, "bad_choice", value=cleaned[:40]))
        elif kind == "border" and cleaned:
            upper = cleaned.upper().replace(" ", "")
            if not BORDER_RE.match(upper):
                errors.append(FieldError(name, "bad_border", value=cleaned[:40]))
            else:
                data[name] = "-".join(sorted(upper.split("-")))
        elif name == "category" and cleaned and categories is not None and cleaned not in categories:
            errors.append(FieldError(name, "unknown_category", value=cleaned[:60]))
    return title, data, errors


# ============================================================================================ changes


def _log(session: Session, sheet: Sheet, actor: Member | None, action: str, detail: str, *, via: str,
         now: datetime) -> None:
    session.add(ModerationAction(
        list_id=sheet.list_id, topic_id=sheet.topic_id, actor_id=actor.id if actor else None, action=action[:30],
        detail=detail[:2000], via=via[:16], created_at=now,
    ))


def save_version(
    session: Session,
    sheet: Sheet,
    title: str,
    data: Mapping[str, Any],
    actor: Member | None,
    *,
    now: datetime,
    via: str = "web",
) -> SheetVersion | None:
    """Record a new version of ``sheet`` with these (validated) fields; None when nothing changed."""
    data = normalize(data)
    if title == sheet.title and data == normalize(sheet.data or {}):
        return None
    number = int(session.scalar(select(func.max(SheetVersion.number)).where(SheetVersion.sheet_id == sheet.id))
                 or 0) + 1
    version = SheetVersion(sheet_id=sheet.id, number=number, title=title, data=data,
                           author_id=actor.id if actor else None, created_at=now)
    session.add(version)
    sheet.title = title
    sheet.data = data
    sheet.version = number
    sheet.updated_at = now
    _log(session, sheet, actor, "sheet-edit", f"sheet #{sheet.id} version {number}", via=via, now=now)
    session.flush()
    return version


def set_status(session: Session, sheet: Sheet, status: str, actor: Member | None, *, now: datetime,
               via: str = "web") -> bool:
    """Publish or withdraw (back to draft) ``sheet``; False when it already had that status."""
    if status not in STATUSES:
        raise SheetError(f"unknown sheet status {status!r}: one of {', '.join(STATUSES)}")
    if sheet.status == status:
        return False
    sheet.status = status
    sheet.updated_at = now
    if status == "published":
        sheet.published_at = now
    _log(session, sheet, actor, "sheet-publish" if status == "published" else "sheet-unpublish",
         f"sheet #{sheet.id} version {sheet.version}", via=via, now=now)
    session.flush()
    return True


def sheets_of_topic(session: Session, topic_id: int) -> list[Sheet]:
    return list(session.scalars(select(Sheet).where(Sheet.topic_id == topic_id).order_by(Sheet.id)))


# ============================================================================================ exports


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def record(sheet: Sheet, *, full: bool, base_url: str, data: Mapping[str, Any] | None = None,
           title: str | None = None) -> dict[str, Any]:
    """One sheet as a flat dict with the keys of :data:`EXPORT_COLUMNS` (only the title-only ones when
    ``full`` is False). ``data``/``title`` override the current fields (to export an older version)."""
    fields = normalize(data if data is not None else (sheet.data or {}))
    base = base_url.rstrip("/")
    row: dict[str, Any] = {
        "id": sheet.id,
        "kind": sheet.kind,
        "status": sheet.status,
        "title": title if title is not None else sheet.title,
        **fields,
        "topic_id": sheet.topic_id,
        "version": sheet.version,
        "created_at": _iso(sheet.created_at),
        "updated_at": _iso(sheet.updated_at),
        "published_at": _iso(sheet.published_at),
        "url": f"{base}/sheets/{sheet.id}",
        "topic_url": f"{base}/t/{sheet.topic_id}" if sheet.topic_id else "",
    }
    if not full:
        row = {k: v for k, v in row.items() if k in TITLE_ONLY_COLUMNS}
    return {k: row[k] for k in EXPORT_COLUMNS if k in row}


def csv_row(rec: Mapping[str, Any]) -> list[str]:
    """A record as CSV cells in :data:`EXPORT_COLUMNS` order (countries joined by spaces; absent = ""; a
    cell a spreadsheet would run as a formula starts with an apostrophe)."""
    out = []
    for column in EXPORT_COLUMNS:
        value = rec.get(column, "")
        if isinstance(value, list):
            value = " ".join(value)
        out.append(spreadsheet_safe(value))
    return out


__all__ = [
    "CHOICES",
    "EXPORT_COLUMNS",
    "FIELDS",
    "FIELD_SPECS",
    "SOLUTION_STATUSES",
    "FieldError",
    "SheetError",
    "create_sheet_from_topic",
    "csv_row",
    "legal_references",
    "normalize",
    "prefill",
    "record",
    "save_version",
    "set_status",
    "sheets_of_topic",
    "validate",
]
