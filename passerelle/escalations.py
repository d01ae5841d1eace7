"""The register of escalated obstacles: escalating a topic, following it up, exporting and mailing it.

Moderators escalate an unresolved obstacle to the national or European level by ``#escalate`` in a reply
(gateway.commands) or on the web (archive_web.escalations, through :func:`escalate`). Each escalation then
moves through states (escalated → acknowledged → in-progress → resolved, or withdrawn) with follow-up
notes. ``Topic.escalation_level`` says where the topic's open escalation stands (the highest level still
open; None once every escalation of the topic is resolved or withdrawn).

The register is mailed to ``escalation.report_to`` (one or more addresses separated by commas) every
``escalation.report_every`` ("weekly": ISO weeks, "monthly": calendar months, both in the site's time
zone), for the period that ended last, by :func:`send_register_reports` (a scheduled job of
digests.scheduler). Sending is idempotent without a table of its own: the report goes through the outbox
with the dedupe key ``escalation-report:<list>:<period>``, and the outbox's UNIQUE(dedupe_key, recipient)
lets exactly one process queue it once — a rerun, a restart or a second scheduler adds nothing. A list
whose register is empty and unchanged during the period gets no mail. The report carries the whole
register of its list as a CSV attachment; it goes to an address the operators chose (the national
coordination), so it includes the moderators' notes.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from passerelle.config import Settings
from passerelle.models import Category, Escalation, EscalationNote, MailingList, Member, ModerationAction, Topic
from passerelle.models.escalation import STATES
from passerelle.models.topic import ESCALATION_LEVELS
from passerelle.overview import spreadsheet_safe, zone

log = logging.getLogger(__name__)

ACTIVE_STATES = ("escalated", "acknowledged", "in-progress")
FINAL_STATES = ("resolved", "withdrawn")
LEVEL_ORDER = {level: i for i, level in enumerate(ESCALATION_LEVELS)}
REPORT_PERIODS = ("weekly", "monthly")
NOTE_MAX = 5_000

REGISTER_COLUMNS: tuple[str, ...] = (
    "escalation_id", "topic_id", "title", "category", "topic_status", "outcome", "level", "state",
    "escalated_at", "updated_at", "escalated_by", "note", "notes", "url",
)
# Readers who may see only a topic's title (and status) get these columns; notes may quote the topic.
TITLE_ONLY_COLUMNS = frozenset(
    {"escalation_id", "topic_id", "title", "category", "topic_status", "outcome", "level", "state", "escalated_at",
     "updated_at", "url"}
)


class EscalationError(ValueError):
    """An escalation request that cannot be done (unknown level or state, empty note...)."""


class SolvedTopicError(EscalationError):
    """``#escalate`` (or the web form) on a topic closed as solved: an obstacle that is solved is not
    escalated as unresolved. The moderator reopens the topic first, or closes it with another outcome
    (study-needed, legal-impossibility), then escalates."""


def is_solved(topic: Topic) -> bool:
    """The topic is closed with the outcome "solved"."""
    return topic.status == "closed" and topic.outcome == "solved"


# The follow-up note written in the register when closing a topic as solved resolves its open escalations.
SOLVED_NOTE: dict[str, str] = {
    "fr": "Sujet clos comme résolu : remontée marquée résolue.",
    "en": "Topic closed as solved: escalation marked resolved.",
    "de": "Thema als gelöst geschlossen: Weitergabe als gelöst markiert.",
    "it": "Argomento chiuso come risolto: segnalazione contrassegnata come risolta.",
    "es": "Tema cerrado como resuelto: elevación marcada como resuelta.",
}


# ============================================================================================ changes


def _log(session: Session, topic: Topic, actor: Member | None, action: str, detail: str, *, via: str,
         now: datetime) -> None:
    session.add(ModerationAction(
        list_id=topic.list_id, topic_id=topic.id, actor_id=actor.id if actor else None, action=action[:30],
        detail=detail[:2000], via=via[:16], created_at=now,
    ))


def _clean_note(note: str) -> str:
    note = (note or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    if len(note) > NOTE_MAX:
        raise EscalationError(f"a note is at most {NOTE_MAX} characters")
    if any((ord(ch) < 32 and ch not in "\n\t") or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF for ch in note):
        raise EscalationError("a note cannot contain control characters")
    return note


def refresh_topic_level(session: Session, topic: Topic) -> None:
    """``Topic.escalation_level``: the highest level among the topic's escalations still open, else None."""
    session.flush()
    levels = session.scalars(
        select(Escalation.level).where(Escalation.topic_id == topic.id, Escalation.state.in_(ACTIVE_STATES))
    ).all()
    known = [lv for lv in levels if lv in LEVEL_ORDER]
    topic.escalation_level = max(known, key=LEVEL_ORDER.__getitem__) if known else None


def escalate(
    session: Session,
    topic: Topic,
    level: str,
    *,
    note: str = "",
    actor: Member | None,
    now: datetime,
    via: str = "web",
) -> tuple[Escalation, bool]:
    """Escalate ``topic`` to ``level``; (escalation, created). Like ``#escalate``: when the topic already
    has an open escalation at that level, the note is added to it instead of a second entry."""
    if level not in ESCALATION_LEVELS:
        raise EscalationError(f"unknown level {level!r}: one of {', '.join(ESCALATION_LEVELS)}")
    if is_solved(topic):
        raise SolvedTopicError(f"topic #{topic.id} is closed as solved: reopen it (or close it with another "
                               "outcome) before escalating it")
    note = _clean_note(note)
    current = session.scalar(
        select(Escalation).where(Escalation.topic_id == topic.id, Escalation.level == level,
                                 Escalation.state.in_(ACTIVE_STATES)).order_by(Escalation.id).limit(1)
    )
    if current is not None:
        if note:
            session.add(EscalationNote(escalation_id=current.id, author_id=actor.id if actor else None, text=note,
                                       created_at=now))
            current.updated_at = now
        _log(session, topic, actor, "escalate", f"{level} (already escalated)" + (f" — {note}" if note else ""),
             via=via, now=now)
        refresh_topic_level(session, topic)
        return current, False
    escalation = Escalation(topic_id=topic.id, level=level, state="escalated", note=note,
                            escalated_by_id=actor.id if actor else None, escalated_at=now, updated_at=now)
    session.add(escalation)
    _log(session, topic, actor, "escalate", level + (f" — {note}" if note else ""), via=via, now=now)
    refresh_topic_level(session, topic)
    session.flush()
    return escalation, True


def change_state(
    session: Session,
    escalation: Escalation,
    state: str,
    *,
    actor: Member | None,
    now: datetime,
    note: str = "",
    via: str = "web",
) -> bool:
    """Move ``escalation`` to ``state`` (with an optional follow-up note); False when nothing changed."""
    if state not in STATES:
        raise EscalationError(f"unknown state {state!r}: one of {', '.join(STATES)}")
    note = _clean_note(note)
    topic = session.get(Topic, escalation.topic_id)
    if topic is None:
        raise EscalationError(f"escalation #{escalation.id} has no topic")
    changed = state != escalation.state
    if changed:
        _log(session, topic, actor, "escalation-state", f"#{escalation.id} {escalation.state} → {state}", via=via,
             now=now)
        escalation.state = state
    if note:
        session.add(EscalationNote(escalation_id=escalation.id, author_id=actor.id if actor else None, text=note,
                                   created_at=now))
    if changed or note:
        escalation.updated_at = now
        refresh_topic_level(session, topic)
    session.flush()
    return changed or bool(note)


def resolve_on_close(
    session: Session,
    topic: Topic,
    *,
    actor: Member | None,
    now: datetime,
    via: str = "web",
    language: str = "",
) -> list[Escalation]:
    """Closing ``topic`` as solved ends its open escalations: each becomes "resolved", with a follow-up note
    saying why, so the register never shows a solved topic as an obstacle still waiting at the national or
    European level. Returns the escalations changed (none unless the topic is closed as solved)."""
    if not is_solved(topic):
        return []
    open_ = list(session.scalars(
        select(Escalation).where(Escalation.topic_id == topic.id, Escalation.state.in_(ACTIVE_STATES))
        .order_by(Escalation.id)
    ))
    if not language:
        ml = session.get(MailingList, topic.list_id)
        language = ml.language if ml is not None and ml.language else "en"
    text = SOLVED_NOTE.get(language, SOLVED_NOTE["en"])
    for esc in open_:
        _log(session, topic, actor, "escalation-state", f"#{esc.id} {esc.state} → resolved (topic closed as solved)",
             via=via, now=now)
        esc.state = "resolved"
        esc.updated_at = now
        session.add(EscalationNote(escalation_id=esc.id, author_id=actor.id if actor else None, text=text,
                                   created_at=now))
    refresh_topic_level(session, topic)
    session.flush()
    return open_


def add_note(session: Session, escalation: Escalation, text: str, *, actor: Member | None, now: datetime,
             via: str = "web") -> EscalationNote:
    """A follow-up note on ``escalation`` (never empty)."""
    text = _clean_note(text)
    if not text:
        raise EscalationError("a note cannot be empty")
    note = EscalationNote(escalation_id=escalation.id, author_id=actor.id if actor else None, text=text,
                          created_at=now)
    session.add(note)
    escalation.updated_at = now
    topic = session.get(Topic, escalation.topic_id)
    if topic is not None:
        _log(session, topic, actor, "escalation-note", f"#{escalation.id}", via=via, now=now)
    session.flush()
    return note


# ============================================================================================ the register


@dataclass
class RegisterEntry:
    escalation: Escalation
    topic: Topic
    category: str
    escalated_by: Member | None
    notes: list[tuple[EscalationNote, Member | None]] = field(default_factory=list)


def register(
    session: Session,
    *,
    list_ids: Iterable[int] | None = None,
    states: Sequence[str] | None = None,
    level: str | None = None,
    topic_id: int | None = None,
    escalated_before: datetime | None = None,
) -> list[RegisterEntry]:
    """Escalations with their topics and notes, newest first, filtered by list, state, level, topic."""
    stmt = (
        select(Escalation, Topic, Category.name)
        .join(Topic, Topic.id == Escalation.topic_id)
        .outerjoin(Category, Category.id == Topic.category_id)
    )
    if list_ids is not None:
        stmt = stmt.where(Topic.list_id.in_(sorted(set(list_ids))))
    if states:
        stmt = stmt.where(Escalation.state.in_(list(states)))
    if level:
        stmt = stmt.where(Escalation.level == level)
    if topic_id is not None:
        stmt = stmt.where(Escalation.topic_id == topic_id)
    if escalated_before is not None:
        stmt = stmt.where(Escalation.escalated_at < escalated_before)
    rows = session.execute(stmt.order_by(Escalation.escalated_at.desc(), Escalation.id.desc())).unique().all()
    if not rows:
        return []
    ids = [esc.id for esc, _t, _c in rows]
    notes: dict[int, list[EscalationNote]] = defaultdict(list)
    for note in session.scalars(
        select(EscalationNote).where(EscalationNote.escalation_id.in_(ids)).order_by(EscalationNote.created_at,
                                                                                     EscalationNote.id)
    ):
        notes[note.escalation_id].append(note)
    people_ids = {esc.escalated_by_id for esc, _t, _c in rows if esc.escalated_by_id}
    people_ids |= {n.author_id for ns in notes.values() for n in ns if n.author_id}
    people = {m.id: m for m in session.scalars(select(Member).where(Member.id.in_(people_ids)))} if people_ids else {}
    return [
        RegisterEntry(
            escalation=esc, topic=topic, category=cat or "",
            escalated_by=people.get(esc.escalated_by_id) if esc.escalated_by_id else None,
            notes=[(n, people.get(n.author_id) if n.author_id else None) for n in notes.get(esc.id, [])],
        )
        for esc, topic, cat in rows
    ]


def _who(member: Member | None) -> str:
    if member is None:
        return ""
    return member.name or member.email


def entry_record(entry: RegisterEntry, *, full: bool, base_url: str) -> dict[str, Any]:
    """One register entry as a dict with the keys of :data:`REGISTER_COLUMNS` (title-only ones unless
    ``full``). ``notes`` is a list of {created_at, author, text}."""
    esc, topic = entry.escalation, entry.topic
    rec: dict[str, Any] = {
        "escalation_id": esc.id,
        "topic_id": topic.id,
        "title": topic.subject,
        "category": entry.category,
        "topic_status": topic.status,
        "outcome": topic.outcome or "",
        "level": esc.level,
        "state": esc.state,
        "escalated_at": esc.escalated_at.isoformat(),
        "updated_at": esc.updated_at.isoformat(),
        "escalated_by": _who(entry.escalated_by),
        "note": esc.note or "",
        "notes": [
            {"created_at": n.created_at.isoformat(), "author": _who(author), "text": n.text}
            for n, author in entry.notes
        ],
        "url": f"{base_url.rstrip('/')}/t/{topic.id}",
    }
    if not full:
        rec = {k: v for k, v in rec.items() if k in TITLE_ONLY_COLUMNS}
    return {k: rec[k] for k in REGISTER_COLUMNS if k in rec}


def _notes_cell(notes: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(f"{n['created_at'][:10]} {n['author'] or '-'}: {n['text']}" for n in notes)


def register_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """The register as CSV text (RFC 4180, CRLF line ends, header row); notes as one "date author: text"
    line each."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(REGISTER_COLUMNS)
    for rec in records:
        cells = []
        for column in REGISTER_COLUMNS:
            value = rec.get(column, "")
            if column == "notes" and isinstance(value, list):
                value = _notes_cell(value)
            cells.append(spreadsheet_safe(value))
        writer.writerow(cells)
    return out.getvalue()


def register_json(records: Sequence[Mapping[str, Any]], *, generated_at: datetime) -> str:
    return json.dumps({"generated_at": generated_at.isoformat(), "count": len(records), "escalations": list(records)},
                      ensure_ascii=False, indent=2)


# ============================================================================================ scheduled mailing


@dataclass(frozen=True)
class ReportPeriod:
    kind: str
    key: str  # "2026-10" or "2026-W44"
    since: datetime
    until: datetime


def report_period(every: str, now: datetime, timezone: str) -> ReportPeriod:
    """The last complete period before ``now``: the previous calendar month or ISO week, local time."""
    if every not in REPORT_PERIODS:
        raise EscalationError(f"escalation.report_every must be one of {', '.join(REPORT_PERIODS)}, not {every!r}")
    tz = zone(timezone)
    local = now.astimezone(tz).date()
    if every == "monthly":
        end = local.replace(day=1)
        start = (end - timedelta(days=1)).replace(day=1)
        key = f"{start.year:04d}-{start.month:02d}"
    else:
        end = local - timedelta(days=local.weekday())
        start = end - timedelta(days=7)
        year, week, _ = start.isocalendar()
        key = f"{year:04d}-W{week:02d}"

    def instant(day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)

    return ReportPeriod(every, key, instant(start), instant(end))


def report_recipients(settings: Settings) -> list[str]:
    """The addresses of ``escalation.report_to`` (comma-separated), lower-cased; load_settings has checked
    them (passerelle.config.address_list), so a bad one cannot reach here from a configuration file."""
    from passerelle.config import address_list

    return [address.lower() for address in address_list(str(settings.escalation.report_to or ""),
                                                         "escalation.report_to")]


_WORDS: dict[str, dict[str, str]] = {
    "subject": {
        "fr": "[{list}] Registre des obstacles transmis — {period}",
        "en": "[{list}] Register of escalated obstacles — {period}",
        "de": "[{list}] Register der weitergegebenen Hindernisse — {period}",
        "it": "[{list}] Registro degli ostacoli trasmessi — {period}",
        "es": "[{list}] Registro de obstáculos elevados — {period}",
    },
    "intro": {
        "fr": "Registre des obstacles transmis par le forum « {title} », période {period} ({since} – {until}).",
        "en": "Register of obstacles escalated by the forum “{title}”, period {period} ({since} – {until}).",
        "de": "Register der vom Forum „{title}“ weitergegebenen Hindernisse, Zeitraum {period} ({since} – {until}).",
        "it": "Registro degli ostacoli trasmessi dal forum «{title}», periodo {period} ({since} – {until}).",
        "es": "Registro de obstáculos elevados por el foro «{title}», periodo {period} ({since} – {until}).",
    },
    "new": {"fr": "Nouveaux pendant la période", "en": "New during the period", "de": "Neu im Zeitraum",
            "it": "Nuovi nel periodo", "es": "Nuevos en el periodo"},
    "open": {"fr": "En cours", "en": "Open", "de": "Offen", "it": "In corso", "es": "En curso"},
    "closed": {"fr": "Clos pendant la période", "en": "Closed during the period",
               "de": "Im Zeitraum abgeschlossen", "it": "Chiusi nel periodo", "es": "Cerrados en el periodo"},
    "none": {"fr": "(aucun)", "en": "(none)", "de": "(keine)", "it": "(nessuno)", "es": "(ninguno)"},
    "since": {"fr": "transmis le", "en": "escalated on", "de": "weitergegeben am", "it": "trasmesso il",
              "es": "elevado el"},
    "updated": {"fr": "mis à jour le", "en": "updated on", "de": "aktualisiert am", "it": "aggiornato il",
                "es": "actualizado el"},
    "attached": {
        "fr": "Le registre complet est joint au format CSV ; il est aussi consultable en ligne : {url}",
        "en": "The whole register is attached as CSV; it can also be read online: {url}",
        "de": "Das vollständige Register ist als CSV beigefügt und online einsehbar: {url}",
        "it": "Il registro completo è allegato in formato CSV ed è consultabile online: {url}",
        "es": "El registro completo se adjunta en CSV y puede consultarse en línea: {url}",
    },
    "national": {"fr": "national", "en": "national", "de": "national", "it": "nazionale", "es": "nacional"},
    "european": {"fr": "européen", "en": "European", "de": "europäisch", "it": "europeo", "es": "europeo"},
    "escalated": {"fr": "transmis", "en": "escalated", "de": "weitergegeben", "it": "trasmesso", "es": "elevado"},
    "acknowledged": {"fr": "pris en compte", "en": "acknowledged", "de": "bestätigt", "it": "preso in carico",
                     "es": "recibido"},
    "in-progress": {"fr": "en traitement", "en": "in progress", "de": "in Bearbeitung", "it": "in lavorazione",
                    "es": "en curso"},
    "resolved": {"fr": "résolu", "en": "resolved", "de": "gelöst", "it": "risolto", "es": "resuelto"},
    "withdrawn": {"fr": "retiré", "en": "withdrawn", "de": "zurückgezogen", "it": "ritirato", "es": "retirado"},
}


def _word(key: str, language: str, **fields: Any) -> str:
    table = _WORDS[key]
    return table.get(language, table["en"]).format(**fields)


def _touched(entry: RegisterEntry, since: datetime, until: datetime) -> bool:
    esc = entry.escalation
    stamps = [esc.escalated_at, esc.updated_at, *(n.created_at for n, _a in entry.notes)]
    return any(since <= s < until for s in stamps)


def compose_report(settings: Settings, mailing_list: MailingList, entries: Sequence[RegisterEntry],
                   period: ReportPeriod, *, language: str) -> tuple[str, str]:
    """(subject, body) of the register report of ``mailing_list`` for ``period``."""
    tz = zone(settings.site.default_timezone)
    base = settings.site.base_url.rstrip("/")

    def day(value: datetime) -> str:
        return value.astimezone(tz).strftime("%Y-%m-%d")

    def line(entry: RegisterEntry) -> str:
        esc, topic = entry.escalation, entry.topic
        head = (f"- #{topic.id} {topic.subject}\n  {_word(esc.level, language)} · {_word(esc.state, language)} · "
                f"{_word('since', language)} {day(esc.escalated_at)} · {_word('updated', language)} "
                f"{day(esc.updated_at)}\n  {base}/t/{topic.id}")
        texts = [esc.note] if esc.note else []
        texts += [f"{day(n.created_at)} {_who(a) or '-'}: {n.text}" for n, a in entry.notes
                  if period.since <= n.created_at < period.until]
        for text in texts:
            head += "\n  > " + "\n  > ".join(text.splitlines()[:20])
        return head

    new = [e for e in entries if period.since <= e.escalation.escalated_at < period.until]
    open_ = [e for e in entries if e.escalation.state in ACTIVE_STATES and e not in new]
    closed = [e for e in entries if e.escalation.state in FINAL_STATES and _touched(e, period.since, period.until)
              and e not in new]
    sections = []
    for key, group in (("new", new), ("open", open_), ("closed", closed)):
        title = f"{_word(key, language)} ({len(group)})"
        body = "\n\n".join(line(e) for e in group) if group else _word("none", language)
        sections.append(f"{title}\n{'=' * len(title)}\n\n{body}")
    until_shown = (period.until - timedelta(seconds=1)).astimezone(tz).strftime("%Y-%m-%d")
    intro = _word("intro", language, title=mailing_list.title or mailing_list.name, period=period.key,
                  since=day(period.since), until=until_shown)
    outro = _word("attached", language, url=f"{base}/escalations")
    subject = _word("subject", language, list=mailing_list.name, period=period.key)
    return subject, f"{intro}\n\n" + "\n\n".join(sections) + f"\n\n{outro}\n"


@dataclass
class ReportResult:
    period: str = ""
    sent: int = 0
    skipped: int = 0
    already: int = 0
    disabled: bool = False
    details: list[str] = field(default_factory=list)


def report_dedupe_key(list_id: int, period: ReportPeriod) -> str:
    return f"escalation-report:{list_id}:{period.key}"


def send_register_reports(settings: Settings, factory: sessionmaker[Session], *, now: datetime) -> ReportResult:
    """Queue the register report of the last complete period to ``escalation.report_to``, once per list
    and period (see the module's docstring). A scheduled job: ``func(settings, factory, now=...)``."""
    from gateway.notices import build_notice, queue_message

    recipients = report_recipients(settings)
    if not recipients:
        return ReportResult(disabled=True)
    period = report_period(str(settings.escalation.report_every), now, settings.site.default_timezone)
    result = ReportResult(period=period.key)
    with factory() as session:
        list_ids = list(session.scalars(select(MailingList.id).order_by(MailingList.id)))
    for list_id in list_ids:
        key = report_dedupe_key(list_id, period)
        try:
            with factory() as session, session.begin():
                ml = session.get(MailingList, list_id)
                if ml is None:
                    continue
                from passerelle.models import OutboxMessage

                done = set(session.scalars(select(OutboxMessage.recipient).where(OutboxMessage.dedupe_key == key)))
                todo = [r for r in recipients if r not in done]
                if not todo:
                    result.already += 1
                    continue
                entries = register(session, list_ids=[list_id], escalated_before=period.until)
                if not any(e.escalation.state in ACTIVE_STATES or _touched(e, period.since, period.until)
                           for e in entries):
                    result.skipped += 1
                    continue
                language = ml.language if ml.language in _WORDS["subject"] else settings.site.default_language
                subject, body = compose_report(settings, ml, entries, period, language=language)
                records = [entry_record(e, full=True, base_url=settings.site.base_url) for e in entries]
                attachment = register_csv(records).encode("utf-8")
                for recipient in todo:
                    msg = build_notice(settings, ml, to=recipient, subject=subject, body=body, now=now,
                                       extra_headers=(("X-Passerelle-Report", key),))
                    msg.add_attachment(attachment, maintype="text", subtype="csv",
                                       filename=f"escalations-{ml.name}-{period.key}.csv")
                    queue_message(session, kind="report", dedupe_key=key, recipient=recipient, payload=bytes(msg),
                                  now=now, list_id=ml.id)
                result.sent += len(todo)
                result.details.append(f"{ml.name}: {len(entries)} escalation(s) to {', '.join(todo)}")
        except IntegrityError:
            # Another process queued the same report between our check and our commit.
            log.info("escalation report %s already queued by another process", key)
            result.already += 1
    if result.sent:
        log.info("escalation register %s queued: %s", period.key, "; ".join(result.details))
    return result


__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "REGISTER_COLUMNS",
    "EscalationError",
    "RegisterEntry",
    "ReportPeriod",
    "ReportResult",
    "SolvedTopicError",
    "add_note",
    "change_state",
    "compose_report",
    "entry_record",
    "escalate",
    "is_solved",
    "refresh_topic_level",
    "register",
    "register_csv",
    "register_json",
    "report_period",
    "report_recipients",
    "resolve_on_close",
    "send_register_reports",
]
