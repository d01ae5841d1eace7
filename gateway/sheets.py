"""Obstacle/Solution and Good practice sheets: pre-filled from a topic, validated, versioned, published.

A moderator turns a topic into a sheet with ``#sheet obstacle`` / ``#sheet practice`` (gateway.commands
calls :func:`create_sheet_from_topic`) or from the web archive (archive_web.sheets). The sheet starts as a
draft pre-filled from the topic:

* title: the topic's subject without reply prefixes;
* countries and border: the border of the topic author's organisation (the author describes the obstacle),
  else from the organisations of the people who took part;
* category: the topic's category;
* obstacle: what the first message says (its own words: quotes, command lines, salutation, sign-off and
  signature trimmed);
* solution: the last substantive answers before the topic was closed — by others than the topic's author
  when there are some, never the courtesy messages ("Merci à tous, je classe ce sujet."), always the one
  the closing message replies to — trimmed the same way (passerelle.mail.quotes.split_reply), each
  introduced by its author;
* legal references: the laws, articles, directives and regulations the messages name;
* contacts: the participants and their organisations (never their addresses: a sheet may be public);
* competent level and solution status: from the topic's escalation (open, else resolved) and outcome.

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
from passerelle.models import (
    Escalation,
    Member,
    Message,
    ModerationAction,
    Organisation,
    Sheet,
    SheetVersion,
    Topic,
)
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


# Salutations that open a message and sign-offs that close it, as people write them on the network's
# borders (FR, DE, IT, ES, EN). A sheet quotes what was said about the obstacle, not how people greet.
_GREETING_RE = re.compile(
    r"""^(?:bonjour|bonsoir|salut|coucou|madame|monsieur|mesdames|messieurs|ch[eè]re?s?|hallo|hello|hi|hey|dear
      |guten\s+(?:tag|morgen|abend)|liebe[rs]?|sehr\s+geehrte[rn]?|servus|gr[üu]ezi|gr[üu]ß\s+gott|moin
      |buongiorno|buonasera|salve|ciao|gentil[ei]|egregi[oa]|car[eiao]|hola|buen[oa]s\s+(?:d[ií]as|tardes)
      |estimad[oa]s?|good\s+(?:morning|afternoon|evening)|greetings)\b""",
    re.IGNORECASE | re.VERBOSE,
)
_SIGN_OFF_RE = re.compile(
    r"""^(?:(?:bien\s+|tr[eè]s\s+)?cordialement|bien\s+[àa]\s+(?:vous|toi|tous)|(?:meilleures\s+|sinc[eè]res\s+)?salutations
      |amicalement|bonne\s+(?:journ[ée]e|soir[ée]e|fin\s+de\s+journ[ée]e|continuation)|belle\s+journ[ée]e|[àa]\s+bient[ôo]t
      |merci(?:\s+d['’]avance|\s+par\s+avance|\s+beaucoup)?
      |(?:mit\s+)?(?:freundlichen|besten|herzlichen|vielen|lieben|sch[öo]nen)\s+gr[üu](?:ß|ss)en
      |(?:viele|beste|liebe|herzliche|freundliche|sch[öo]ne)\s+gr[üu](?:ß|ss)e|gr[üu](?:ß|ss)e|gru(?:ß|ss)|mfg|lg|vg
      |(?:cordiali|distinti|cari)\s+saluti|saluti|un\s+saluto|cordialmente|a\s+presto
      |saludos(?:\s+cordiales)?|un\s+(?:cordial\s+)?saludo|atentamente|un\s+abrazo
      |(?:best|kind|warm)\s+regards|regards|best\s+wishes|best(?=\s*,?\s*$)|cheers|thanks|thank\s+you|many\s+thanks|sincerely
      |yours(?:\s+sincerely|\s+truly)?)\b""",
    re.IGNORECASE | re.VERBOSE,
)
# Sentences that thank, close the topic or take leave: a reply made only of them is no answer.
_COURTESY_RE = re.compile(
    r"""^(?:un\s+)?(?:grand\s+|tout\s+)?merci|^(?:many\s+)?thanks?\b|^thank\s+you|^(?:vielen\s+|herzlichen\s+|besten\s+)?dank
      |^(?:mille\s+)?grazie|^(?:muchas\s+)?gracias
      |\b(?:je|nous)\s+(?:classe|clos|cl[ôo]ture|ferme|classons|cl[ôo]turons|fermons)\b
      |\b(?:ce|le)\s+sujet\s+(?:est\s+)?(?:clos|class[ée]|r[ée]solu|ferm[ée])
      |\b(?:i['’]?m|i\s+am|we\s+are|we['’]re)\s+closing\b|\bclos(?:e|ing)\s+(?:this|the)\s+(?:topic|thread)\b
      |\b(?:ich|wir)\s+schlie(?:ß|ss)en?\b|\bthema\s+(?:ist\s+)?(?:geschlossen|erledigt)
      |\bchiud(?:o|iamo)\b|\bargomento\s+chiuso|\bcierr(?:o|amos)\b|\btema\s+cerrado
      |^bonne\s+(?:journ[ée]e|soir[ée]e|continuation|fin)|^belle\s+journ[ée]e|^[àa]\s+bient[ôo]t|^bon\s+week
      |^je\s+reste\s+[àa]|^n['’]h[ée]sitez|^sch[öo]nen\s+(?:tag|abend)|^buona\s+(?:giornata|serata)|^buen\s+d[ií]a
      |^have\s+a\s+(?:nice|good|great)|^feel\s+free|^(?:viele\s+|liebe\s+|beste\s+)?gr[üu](?:ß|ss)e|^saluti|^saludos
      |^(?:best\s+|kind\s+)?regards|^(?:bien\s+)?cordialement""",
    re.IGNORECASE | re.VERBOSE,
)
# A reply whose substance, courtesy sentences set aside, is shorter than this is a courtesy message.
COURTESY_MAX_CHARS = 40


_THANKS_RE = re.compile(r"^(?:merci|thanks|thank\s+you|many\s+thanks|danke|grazie|gracias)\b", re.IGNORECASE)
# What may follow a "thanks" that signs a message off ("Merci à tous !"); "Merci de vérifier." is a request.
_THANKS_TAIL_RE = re.compile(
    r"^[\s,.!]*(?:(?:[àa]\s+(?:tous|toutes|vous|tutti|todos))|everyone|all|euch|allen|d['’]avance|par\s+avance"
    r"|beaucoup|in\s+advance|im\s+voraus|in\s+anticipo|de\s+antemano)?[\s,.!]*$",
    re.IGNORECASE,
)


def _is_sign_off(line: str) -> bool:
    """A valediction line ("Bien cordialement,", "Viele Grüße", "Un saludo", "Merci à tous !"), not a sentence
    that happens to start with one of its words ("Regards croisés :", "Merci de vérifier.")."""
    match = _SIGN_OFF_RE.match(line)
    if match is None or len(line.split()) > 5 or line.endswith((":", "?", ";")):
        return False
    thanks = _THANKS_RE.match(line)
    return thanks is None or bool(_THANKS_TAIL_RE.match(line[thanks.end():]))


def _name_words(message: Message) -> set[str]:
    """The author's first and last names (and organisation name words), lower-cased, to recognise a
    signature block ("Jordi Puig / GECT Hospital de la Cerdanya", "Anne")."""
    author = message.author
    names = [author.name if author and author.name else "", message.from_name or ""]
    words = {w.lower() for n in names for w in re.findall(r"[^\W\d_]{2,}", n)}
    return words


def _strip_salutations(text: str, message: Message) -> str:
    """``text`` without its opening salutation line, its sign-off ("Bien cordialement," and what follows)
    and a closing block of short lines naming the author (a signature without the "-- " delimiter)."""
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None:
        line = lines[first].strip()
        if (_GREETING_RE.match(line) and len(line) <= 60 and len(line.split()) <= 8
                and not line.endswith((".", "?"))):
            lines = lines[first + 1:]
    # The last sign-off line followed by at most a few short lines (name, organisation, telephone).
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i].strip()
        after = [x for x in lines[i + 1:] if x.strip()]
        if len(after) > 4 or any(len(x.strip()) > 70 for x in after):
            break
        if line and len(line) <= 40 and _is_sign_off(line) and any(x.strip() for x in lines[:i]):
            lines = lines[:i]
            break
    text = "\n".join(lines).strip()
    # A last paragraph of short lines whose first line names the author: a signature.
    names = _name_words(message)
    head, sep, last = text.rpartition("\n\n")
    block = [x.strip() for x in last.split("\n") if x.strip()]
    if sep and head.strip() and names and 0 < len(block) <= 4 and all(len(x) <= 70 for x in block) and \
            not block[0].endswith((".", "?", "!", ":", ";")) and \
            {w.lower() for w in re.findall(r"[^\W\d_]{2,}", block[0])} & names:
        text = head
    return text.strip()


def _without_commands(text: str) -> str:
    """``text`` without ``#command`` lines a moderator left in it (gateway.command_parse reads them)."""
    from gateway.command_parse import parse_hash_line

    return "\n".join(line for line in text.split("\n") if parse_hash_line(line) is None)


def _own_words(message: Message, trimmed: str) -> str:
    """What ``message`` says about the matter: its own words without commands, salutations or signature."""
    return _strip_salutations(_without_commands(trimmed), message)


def is_courtesy(text: str) -> bool:
    """True for a thanks / closing / leave-taking message ("Merci à tous, je classe ce sujet.", "Vielen Dank!"):
    nothing but courtesy sentences, or courtesy around a few words."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]
    rest = [s for s in sentences if not _COURTESY_RE.search(s)]
    substance = " ".join(rest)
    return not substance or (len(rest) < len(sentences) and len(substance) < COURTESY_MAX_CHARS)


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
    # The author describes the obstacle: their organisation's border is the obstacle's, whoever answered
    # from elsewhere (a Franco-Swiss question answered from Lörrach stays CH-FR).
    author = session.get(Member, topic.author_id) if topic.author_id else (messages[0].author if messages else None)
    author_org = author.organisation if author is not None else None
    author_border = (author_org.border or "").upper() if author_org is not None else ""
    if BORDER_RE.match(author_border):
        border = author_border
        countries = sorted(set(author_border.split("-")))
    elif borders:
        border = borders.most_common(1)[0][0]
    elif len(countries) >= 2:
        border = "-".join(countries)
    else:
        border = ""

    own = {m.id: _own_words(m, texts[m.id]) for m in messages}
    obstacle = _shorten(own.get(messages[0].id, ""), EXCERPT_CHARS * 2) if messages else ""
    chosen = _solution_messages(topic, messages, own)
    solution = "\n\n".join(f"{_author_line(m)}\n{_shorten(own[m.id], EXCERPT_CHARS)}" for m in chosen)

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
        "level": _level(session, topic),
        "solution": solution,
        "solution_status": OUTCOME_TO_SOLUTION.get(topic.outcome or "", ""),
        "legal_references": "\n".join(legal_references([texts[m.id] for m in messages])),
        "contacts": "\n".join(contacts),
        "countries": countries,
        "border": border,
        "category": topic.category.name if topic.category is not None else "",
    }
    return _shorten_title(title), normalize(data)


def _by_author(topic: Topic, message: Message, first: Message) -> bool:
    if topic.author_id is not None and message.author_id is not None:
        return message.author_id == topic.author_id
    return (message.from_addr or "").lower() == (first.from_addr or "").lower()


def _solution_messages(topic: Topic, messages: Sequence[Message], own: Mapping[int, str]) -> list[Message]:
    """The answers a sheet quotes as the solution, oldest first.

    The messages up to the close (all of them while the topic is open), the opening message excepted unless
    it is the only one; of those, the substantive answers of people other than the topic's author (else the
    author's own substantive follow-ups): not the thanks and "je classe ce sujet" of the closing message.
    The last :data:`CLOSING_MESSAGES` of them, with the message the closing one replies to always among them
    (the moderator closing "after this answer" points at the solution).
    """
    if not messages:
        return []
    first = messages[0]
    window = [m for m in messages if topic.closed_at is None or m.received_at <= topic.closed_at]
    if len(window) <= 1:
        return [m for m in window if own.get(m.id)]
    window = window[1:]
    substantive = [m for m in window if own.get(m.id) and not is_courtesy(own[m.id])]
    answers = [m for m in substantive if not _by_author(topic, m, first)] or substantive
    chosen = answers[-CLOSING_MESSAGES:]
    last = window[-1]
    if topic.closed_at is not None and last not in answers and last.parent_id is not None:
        parent = next((m for m in answers if m.id == last.parent_id), None)
        if parent is not None and parent not in chosen:
            chosen = [parent, *chosen[-(CLOSING_MESSAGES - 1):]] if CLOSING_MESSAGES > 1 else [parent]
    order = {m.id: i for i, m in enumerate(messages)}
    return sorted(chosen, key=lambda m: order[m.id])


def _level(session: Session, topic: Topic) -> str:
    """The competent level: where the topic's open escalation stands, else the highest level it was
    escalated to and resolved at (closing a topic as solved resolves its escalations), else unknown."""
    if topic.escalation_level in LEVELS:
        return str(topic.escalation_level)
    levels = session.scalars(
        select(Escalation.level).where(Escalation.topic_id == topic.id, Escalation.state == "resolved")
    ).all()
    known = [lv for lv in levels if lv in LEVELS]
    return max(known, key=LEVELS.index) if known else ""


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


def find_sheet(session: Session, topic: Topic, kind: str) -> Sheet | None:
    """The sheet of ``kind`` already made from ``topic`` (a topic has at most one of each kind), or None."""
    if kind not in KINDS:
        raise SheetError(f"unknown kind of sheet {kind!r}: one of {', '.join(KINDS)}")
    return session.scalar(
        select(Sheet).where(Sheet.topic_id == topic.id, Sheet.kind == kind).order_by(Sheet.id).limit(1)
    )


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
    existing = find_sheet(session, topic, kind)
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
    "find_sheet",
    "legal_references",
    "normalize",
    "prefill",
    "record",
    "save_version",
    "set_status",
    "sheets_of_topic",
    "validate",
]
