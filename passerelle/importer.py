"""Import an existing list archive (Mailman 2/3, pipermail, Sympa, any mbox) into a list, sending nothing.

Sources: an mbox file (plain or .gz), or a directory of them (pipermail's monthly ``2019-January.txt.gz``),
or a directory of one-message files (Sympa's ``arctxt/1``, ``2``…, MH folders, maildir ``cur/``).

Mbox folklore handled here, before the message reaches the same parse/thread/archive code the gateway
worker uses:

- "From " separator lines (the envelope sender and an asctime date) start each message. A writer escapes
  body lines that would look like one as ">From "; mboxrd escapes ">From " too (">>From "), so one ">"
  is removed from every ``^>+From `` line: right for mboxrd, and for mboxo it restores every escaped
  line (a literal ">From " written by the author loses its ">", the format cannot tell them apart).
- Pipermail (Mailman 2's public archive) hides addresses: ``From: jane at example.org (Jane Doe)``, and
  the ETH Zürich variant ``From: j@ne @end|ng |rom ex@mple@org`` that also replaced letters, which
  cannot be undone: such an author gets a stable address under ``obfuscated.example`` (RFC 2606) so their
  messages still group together, with their display name kept.
- A message without Date gets the date of its "From " line. One without Message-ID gets the parser's
  synthetic id, a hash of its bytes, so a second import of the same archive recognises it too
  (Message-ID is the dedupe key).
"""

from __future__ import annotations

import gzip
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from passerelle.db import session_scope

if TYPE_CHECKING:
    from passerelle.config import Settings
    from passerelle.models import InboundMessage, MailingList

log = logging.getLogger(__name__)

# RFC 2606 reserves .example (and .invalid, which email validators refuse as a mail domain).
OBFUSCATED_DOMAIN = "obfuscated.example"

_WEEKDAY = rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH = rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
# "From jane@example.org  Tue Jan  1 13:40:25 2019", with the variants real writers produce: a time zone
# name or offset before or after the year, no seconds, a sender containing spaces (pipermail's " at ").
_FROM_LINE = re.compile(
    rb"^From (?P<sender>.*?)\s+(?P<date>" + _WEEKDAY + rb",?\s+" + _MONTH + rb"\s+\d{1,2}\s+\d{1,2}:\d{2}(?::\d{2})?"
    rb"(?:\s+(?:[A-Z]{2,5}|[+-]\d{4}))?\s+\d{4}(?:\s+(?:[A-Z]{2,5}|[+-]\d{4}))?)\s*$"
)
_TIME = re.compile(rb"\d{1,2}:\d{2}")
_ESCAPED_FROM = re.compile(rb"^>+From ")
_HEADER_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+:")
_ASCTIME = re.compile(
    r"(?P<month>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2}))?"
    r"(?:\s+(?P<tz1>[A-Z]{2,5}|[+-]\d{4}))?\s+(?P<year>\d{4})(?:\s+(?P<tz2>[A-Z]{2,5}|[+-]\d{4}))?"
)
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                        "Nov", "Dec"), start=1)}

# Pipermail: "jane at example.org"; a domain is at least two dot-separated labels.
_AT_OBFUSCATION = re.compile(r"(?P<local>[^\s@<>()\"',;:]+) at (?P<domain>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)\b")
# stat.ethz.ch's pipermail: " @end|ng |rom " or " @ending from " ("sending from" with s->@, i/l/f->|), and
# a, s and "." of both sides replaced by "@" (i and l sometimes by "|").
_ETH_OBFUSCATION = re.compile(
    r"(?P<local>[^\s<>()\"',;:]+) @end(?:ing|\|ng) (?:\|rom|from) (?P<domain>[^\s<>()\"',;:]+)"
)


class ArchiveError(ValueError):
    """The source cannot be read at all (missing, not an archive): nothing was imported."""


@dataclass
class ArchiveEntry:
    """One message read from an archive, ready for the parser."""

    raw: bytes
    # "<file>:<n>" (n-th message of that file, from 1): shown in the summary for shunted messages.
    where: str
    envelope_from: str = ""
    envelope_date: datetime | None = None
    # Bytes of the source consumed so far, for the progress bar.
    progress_bytes: int = 0


# --- reading ------------------------------------------------------------------------------------------


def parse_from_line(line: bytes) -> tuple[str, datetime | None] | None:
    """(sender, date) of an mbox "From " separator line, or None when the line is not one."""
    match = _FROM_LINE.match(line.rstrip(b"\r\n"))
    if not match:
        return None
    sender = deobfuscate_address_text(match.group("sender").decode("latin-1").strip())
    return sender, parse_asctime(match.group("date").decode("ascii", "replace"))


def parse_asctime(value: str) -> datetime | None:
    """The date of a "From " line ("Tue Jan  1 13:40:25 2019"), UTC unless an offset is given."""
    match = _ASCTIME.search(value)
    if not match or match.group("month") not in _MONTHS:
        return None
    try:
        date = datetime(
            int(match.group("year")), _MONTHS[match.group("month")], int(match.group("day")),
            int(match.group("h")), int(match.group("m")), int(match.group("s") or 0), tzinfo=UTC,
        )
    except ValueError:
        return None
    tz = match.group("tz1") or match.group("tz2") or ""
    if tz[:1] in "+-" and len(tz) == 5:
        from datetime import timedelta

        sign = 1 if tz[0] == "+" else -1
        date -= sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5]))
    return date


def _is_separator(line: bytes, previous_blank: bool, next_line: bytes | None) -> bool:
    if not line.startswith(b"From "):
        return False
    if previous_blank:
        # The classic rule (a "From " line after an empty line), made safer by asking for a time of day:
        # an unescaped "From here on, ..." in a body is not a separator.
        return bool(_TIME.search(line))
    # Monthly archives concatenated without the final empty line: accept a complete asctime From line
    # followed by a header.
    return bool(_FROM_LINE.match(line.rstrip(b"\r\n"))) and bool(next_line and _HEADER_LINE.match(next_line))


def iter_mbox(stream: IO[bytes], *, name: str = "mbox", unescape: bool = True, start_bytes: int = 0) -> Iterator[
        ArchiveEntry]:
    """Every message of an mbox stream, with ">From " unescaped and the pipermail quirks repaired.

    Text before the first "From " line is ignored when it is empty, otherwise it is the first message
    (a single message saved without separator).
    """
    lines: list[bytes] = []
    envelope: tuple[str, datetime | None] | None = None
    consumed = start_bytes
    count = 0
    previous_blank = True
    pending: bytes | None = stream.readline()
    while pending:
        line = pending
        pending = stream.readline()
        consumed += len(line)
        if _is_separator(line, previous_blank, pending):
            if lines and (envelope is not None or any(x.strip() for x in lines)):
                count += 1
                yield _entry(lines, envelope, f"{name}:{count}", consumed - len(line), unescape)
            lines = []
            envelope = parse_from_line(line) or ("", None)
            previous_blank = False
            continue
        lines.append(line)
        previous_blank = not line.strip()
    if lines and (envelope is not None or any(x.strip() for x in lines)):
        count += 1
        yield _entry(lines, envelope, f"{name}:{count}", consumed, unescape)


def _entry(
    lines: list[bytes], envelope: tuple[str, datetime | None] | None, where: str, consumed: int, unescape: bool
) -> ArchiveEntry:
    # The empty line before the next separator belongs to the mbox format, not to the message.
    if lines and not lines[-1].strip():
        lines = lines[:-1]
    if unescape:
        lines = [line[1:] if line.startswith(b">") and _ESCAPED_FROM.match(line) else line for line in lines]
    raw = b"".join(lines)
    sender, date = envelope if envelope else ("", None)
    return ArchiveEntry(
        raw=repair_headers(raw, envelope_date=date), where=where, envelope_from=sender, envelope_date=date,
        progress_bytes=consumed,
    )


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


_PIPERMAIL_MONTHS = {name: i for i, name in enumerate(
    ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
     "November", "December"), start=1)}


def _archive_order(path: Path) -> list[Any]:
    # Pipermail names monthly archives "2019-January.txt.gz": alphabetical order is not chronological.
    match = re.match(r"(\d{4})-([A-Za-z]+)", path.name)
    if match and match.group(2) in _PIPERMAIL_MONTHS:
        return [int(match.group(1)), _PIPERMAIL_MONTHS[match.group(2)], path.name]
    return [0, 0, *_natural_key(path)]


def archive_files(path: Path) -> list[Path]:
    """The files to read for ``path``: itself, or a directory's files in chronological/natural order."""
    if not path.exists():
        raise ArchiveError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    files = [p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")]
    files.sort(key=lambda p: (str(p.parent), _archive_order(p)))
    if not files:
        raise ArchiveError(f"{path}: the directory holds no files to import")
    return files


def _looks_like_mbox(head: bytes) -> bool:
    return head.startswith(b"From ") and bool(_TIME.search(head.split(b"\n", 1)[0]))


def _looks_like_message(head: bytes) -> bool:
    first = head.lstrip(b"\r\n").split(b"\n", 1)[0]
    return bool(_HEADER_LINE.match(first)) or first.startswith(b"From ")


def iter_archive(path: Path | str, *, unescape: bool = True) -> Iterator[ArchiveEntry]:
    """Every message under ``path`` (see module doc); raises ArchiveError when it is not an archive."""
    path = Path(path)
    files = archive_files(path)
    base = 0
    for file in files:
        with _open(file) as stream:
            try:
                head = stream.peek(4096)[:4096] if hasattr(stream, "peek") else b""
            except (OSError, EOFError) as exc:
                raise ArchiveError(f"{file}: cannot be read ({exc})") from exc
            name = file.name if len(files) == 1 else str(file.relative_to(path))
            if _looks_like_mbox(head):
                last = base
                try:
                    for entry in iter_mbox(stream, name=name, unescape=unescape, start_bytes=base):
                        last = entry.progress_bytes
                        yield entry
                except (OSError, EOFError) as exc:  # a truncated .gz: what was read is imported
                    raise ArchiveError(f"{file}: read error after {last - base} bytes ({exc})") from exc
            elif _looks_like_message(head):
                raw = stream.read()
                yield ArchiveEntry(raw=repair_headers(raw, envelope_date=None), where=name,
                                   progress_bytes=base + len(raw))
            elif len(files) == 1:
                raise ArchiveError(
                    f"{file}: not an mbox archive (it should start with a 'From sender date' line) nor a message"
                )
            # In a directory, files that are neither (an index.html next to the .txt.gz) are skipped.
        base += file.stat().st_size if file.suffix != ".gz" else _gz_size(file)


def _gz_size(path: Path) -> int:
    # The gzip trailer holds the uncompressed size modulo 2**32: good enough for a progress bar.
    with path.open("rb") as f:
        f.seek(-4, 2)
        return int.from_bytes(f.read(4), "little")


def total_bytes(path: Path | str) -> int:
    return sum(_gz_size(f) if f.suffix == ".gz" else f.stat().st_size for f in archive_files(Path(path)))


# --- repairing headers ----------------------------------------------------------------------------------


def deobfuscate_address_text(value: str) -> str:
    """Undo pipermail's address hiding in a From header value or From-line sender (see module doc)."""
    if "@" in value:
        # Either a real address (left alone) or the ETH variant, whose "@" are letters.
        return _ETH_OBFUSCATION.sub(lambda m: _eth_address(m.group("local"), m.group("domain")), value)
    return _AT_OBFUSCATION.sub(lambda m: f"{m.group('local')}@{m.group('domain')}", value)


def _eth_address(local: str, domain: str) -> str:
    # The real address cannot be recovered ("@" stands for a, s or "."; "|" for i, l or f): keep what is
    # left, stable across both variants of the scheme (the older one kept i, l and f), so that one author's
    # messages share one address.
    def clean(part: str) -> str:
        part = re.sub(r"[^A-Za-z0-9_.-]", "_", re.sub(r"[@|ilf]", "_", part))
        return re.sub(r"\.{2,}", ".", part).strip(".") or "x"

    return f"{clean(local)}.at.{clean(domain)}@{OBFUSCATED_DOMAIN}"[:320]


def _header_block(raw: bytes) -> tuple[bytes, bytes]:
    match = re.search(rb"\r?\n\r?\n", raw)
    if match is None:
        return raw, b""
    return raw[: match.start()], raw[match.start():]


def _newline(raw: bytes) -> bytes:
    return b"\r\n" if b"\r\n" in raw[:2048] else b"\n"


def repair_headers(raw: bytes, *, envelope_date: datetime | None) -> bytes:
    """Deobfuscate From/Reply-To/Cc/Sender; add Date (from the "From " line) when missing."""
    head, rest = _header_block(raw)
    nl = _newline(head)
    text = head.decode("latin-1")  # byte-preserving: only ASCII is rewritten
    changed = False

    def fix(match: re.Match[str]) -> str:
        nonlocal changed
        fixed = deobfuscate_address_text(match.group(2))
        if fixed != match.group(2):
            changed = True
        return match.group(1) + fixed

    text = re.sub(r"(?im)^((?:from|reply-to|cc|sender):)(.*(?:\r?\n[ \t].*)*)", fix, text)
    names = {m.group(1).lower() for m in re.finditer(r"(?m)^([!-9;-~]+):", text)}
    additions: list[str] = []
    # A header block with no header at all is not mail: adding a Date would make it look like one.
    if names and "date" not in names and envelope_date is not None:
        additions.append("Date: " + format_datetime(envelope_date))
    if not changed and not additions:
        return raw
    head_bytes = text.encode("latin-1")
    if additions:
        extra = nl.join(a.encode("ascii") for a in additions)
        head_bytes = head_bytes + nl + extra if head_bytes.strip() else extra
        if not rest:
            rest = nl + nl
    return head_bytes + rest


# --- progress and summary -------------------------------------------------------------------------------


class ProgressBar:
    """A plain-text progress bar on a stream (stderr): redrawn in place on a terminal, a line per 10% else."""

    def __init__(self, total: int, stream: IO[str] | None = None, *, width: int = 30, clock: Any = time.monotonic
                 ) -> None:
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.clock = clock
        self.started = clock()
        self._last_draw = 0.0
        self._last_decile = -1
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, done: int, messages: int, *, force: bool = False) -> None:
        now = self.clock()
        fraction = min(done / self.total, 1.0)
        decile = int(fraction * 10)
        if self.tty:
            if not force and now - self._last_draw < 0.2:
                return
        elif not force and decile == self._last_decile:
            return
        self._last_draw, self._last_decile = now, decile
        elapsed = max(now - self.started, 1e-6)
        rate = messages / elapsed
        eta = (elapsed / fraction - elapsed) if fraction > 0 else 0.0
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        line = (f"[{bar}] {fraction * 100:5.1f}%  {messages} messages  {rate:,.0f} msg/s  "
                f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def finish(self, messages: int) -> None:
        if self.tty or self._last_decile < 10:
            self.update(self.total, messages, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class ImportReport:
    imported: int = 0
    duplicates: int = 0
    # (where, message-id, reason)
    shunted: list[tuple[str, str, str]] = field(default_factory=list)
    topics_created: int = 0
    # Messages a previous import already shunted (kept once, with their reason).
    already_shunted: int = 0
    elapsed: float = 0.0

    @property
    def total(self) -> int:
        return self.imported + self.duplicates + len(self.shunted) + self.already_shunted

    def reasons(self) -> Counter[str]:
        return Counter(reason for _w, _m, reason in self.shunted)

    def format(self, *, examples: int = 3) -> str:
        rate = self.total / self.elapsed if self.elapsed > 0 else 0.0
        lines = [
            f"read {self.total} messages in {self.elapsed:.1f}s ({rate:,.0f} msg/s)",
            f"  imported:   {self.imported} ({self.topics_created} new topics)",
            f"  duplicates: {self.duplicates} (Message-ID already archived)"
            + (f", and {self.already_shunted} shunted by an earlier import" if self.already_shunted else ""),
            f"  shunted:    {len(self.shunted)}" + (" (kept with their raw bytes; `passerelle status` lists them)"
                                                     if self.shunted else ""),
        ]
        for reason, count in self.reasons().most_common():
            lines.append(f"    {count:6d}  {reason}")
            shown = [(w, m) for w, m, why in self.shunted if why == reason][:examples]
            lines.extend(f"              e.g. {where} <{message_id}>" for where, message_id in shown)
        return "\n".join(lines)


def _chunks(entries: Iterable[ArchiveEntry], size: int) -> Iterator[list[ArchiveEntry]]:
    batch: list[ArchiveEntry] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- importing ------------------------------------------------------------------------------------------


def import_archive(
    settings: Settings,
    factory: sessionmaker[Session],
    source: Path | str,
    *,
    list_name: str,
    now: datetime,
    progress: ProgressBar | None = None,
    batch_size: int = 200,
    unescape: bool = True,
) -> ImportReport:
    """Import every message under ``source`` into the list ``list_name``; queues no mail at all.

    Each message goes through the gateway's own parse, thread placement and post handler (archive,
    thread refs, attachments, search index) with its own date as the time of the facts, so topics get
    their historical creation and activity dates and the subject fallback of threading works on the
    archive's timeline. Moderator commands in old mail are not obeyed, and no rule applies: whatever the
    archive holds was posted. Each message gets a spool row (source "import") holding its raw bytes.

    Re-runnable: a Message-ID already archived counts as a duplicate, a message shunted by an earlier
    import is not shunted twice. Messages are committed ``batch_size`` at a time, each in a savepoint so
    that one failure loses nothing else.
    """
    from passerelle.models import MailingList

    source = Path(source)
    with session_scope(factory) as session:
        ml = session.scalar(select(MailingList).where(MailingList.name == list_name))
        if ml is None:
            raise ArchiveError(f"no list named {list_name!r} (create it first: passerelle create-list {list_name})")
        list_id = ml.id
    report = ImportReport()
    started = time.monotonic()
    read = 0
    for chunk in _chunks(iter_archive(source, unescape=unescape), max(1, batch_size)):
        with session_scope(factory) as session:
            ml = session.get(MailingList, list_id)
            assert ml is not None
            for entry in chunk:
                _import_entry(session, settings, ml, entry, now=now, report=report)
                read += 1
                if progress is not None:
                    progress.update(entry.progress_bytes, read)
    report.elapsed = time.monotonic() - started
    if progress is not None:
        progress.finish(read)
    log.info(
        "import of %s into %s: %d imported, %d duplicates, %d shunted in %.1fs",
        source, list_name, report.imported, report.duplicates, len(report.shunted), report.elapsed,
    )
    return report


def _import_entry(
    session: Session, settings: Settings, ml: MailingList, entry: ArchiveEntry, *, now: datetime,
    report: ImportReport,
) -> None:
    from gateway.inbound import sniff_message_id

    try:
        with session.begin_nested():
            status, reason, message_id = _archive_one(session, settings, ml, entry, now=now)
    except Exception as exc:  # anything the archiving code did not foresee: keep the message, say why
        log.warning("import %s: archiving failed: %s", entry.where, _short_error(exc), exc_info=True)
        status, reason = "shunted", f"archiving failed: {_short_error(exc)}"
        message_id = sniff_message_id(entry.raw)
    if status == "done":
        report.imported += 1
        if reason == "new topic":
            report.topics_created += 1
    elif status == "duplicate":
        report.duplicates += 1
    else:
        if _already_shunted(session, ml.name, message_id, entry.raw):
            report.already_shunted += 1
            return
        with session.begin_nested():
            session.add(_spool_row(ml, entry, message_id, status="shunted", reason=f"{entry.where}: {reason}",
                                   date=now, now=now))
        report.shunted.append((entry.where, message_id, reason))


def _short_error(exc: BaseException) -> str:
    """"OperationalError: no such column ..." — the first line only (database errors carry the whole SQL
    statement and its parameters, which would make every shunted message's reason unique)."""
    inner = getattr(exc, "orig", None) or exc
    first = (str(inner).strip().splitlines() or [""])[0]
    return f"{type(inner).__name__}: {first}"[:300]


def _already_shunted(session: Session, list_name: str, message_id: str, raw: bytes) -> bool:
    from passerelle.models import InboundMessage

    return bool(session.scalar(
        select(func.count()).select_from(InboundMessage).where(
            InboundMessage.source == "import", InboundMessage.status == "shunted",
            InboundMessage.list_name == list_name, InboundMessage.message_id_header == message_id[:995],
            InboundMessage.size == len(raw),
        )
    ))


def _spool_row(ml: MailingList, entry: ArchiveEntry, message_id: str, *, status: str, reason: str,
               date: datetime, now: datetime) -> InboundMessage:
    from passerelle.models import InboundMessage

    return InboundMessage(
        received_at=date, source="import", envelope_from=entry.envelope_from[:320], envelope_to=[],
        list_name=ml.name[:64], message_id_header=message_id[:995], size=len(entry.raw), raw=entry.raw,
        status=status, attempts=1 if status == "shunted" else 0, reason=reason[:4000], claimed_by="",
        processed_at=now,
    )


def _archive_one(
    session: Session, settings: Settings, ml: MailingList, entry: ArchiveEntry, *, now: datetime
) -> tuple[str, str, str]:
    """(status, reason, message-id) of one message: done (reason "new topic" or ""), duplicate, shunted."""
    from gateway.context import MailContext
    from gateway.handlers.post import find_duplicate, post_message
    from gateway.threadindex import place_message
    from passerelle.mail.parse import DEFAULT_MAX_BYTES, MessageParseError, parse_message
    from passerelle.models import Member

    try:
        parsed = parse_message(entry.raw, max_bytes=max(DEFAULT_MAX_BYTES, int(settings.lists.max_message_bytes)))
    except MessageParseError as exc:
        return "shunted", f"not a usable mail message: {exc.reason}", ""
    if find_duplicate(session, parsed.message_id) is not None:
        return "duplicate", "", parsed.message_id
    # The facts happened at the message's date (the "From " line's when Date is unreadable); a date in
    # the future (a sender's broken clock) would sort the topic above everything: it is capped.
    date = min(parsed.date or entry.envelope_date or now, now)
    inbound = _spool_row(ml, entry, parsed.message_id, status="processing", reason="", date=date, now=now)
    session.add(inbound)
    session.flush()
    # Authors who are members today are linked to their messages; nobody is created or subscribed.
    sender = None
    if parsed.from_addr:
        sender = session.scalar(select(Member).where(Member.email == parsed.from_addr.lower()))
    ctx = MailContext(
        session=session, settings=settings, now=date, inbound=inbound, parsed=parsed, mailing_list=ml,
        sender=sender, subscription=None, recipient_local=ml.name,
    )
    placement = place_message(ctx)
    outcome = post_message(ctx, placement, fan_out=False)
    inbound.status = outcome.status
    inbound.reason = f"imported from {entry.where}: {outcome.reason}"[:4000]
    return outcome.status, "new topic" if placement.topic is None else "", parsed.message_id


# --- command line ---------------------------------------------------------------------------------------


def add_parser(subparsers: Any) -> None:
    """Register ``passerelle import-mbox`` (called by passerelle.cli.build_parser)."""
    import argparse

    p = subparsers.add_parser(
        "import-mbox",
        help="import an existing archive (mbox, Mailman/pipermail, Sympa) into a list, sending nothing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="an mbox file (.gz accepted), or a directory of mbox files or of single messages")
    p.add_argument("--list", required=True, dest="list_name", metavar="NAME", help="the list to import into")
    # Also accepted after the subcommand; SUPPRESS keeps the top-level value when it is not given here.
    p.add_argument("--config", default=argparse.SUPPRESS, help="site configuration file (TOML)")
    p.add_argument("--no-unescape", action="store_true",
                   help="keep '>From ' lines as they are (mboxcl/mboxcl2 files, which do not escape)")
    p.add_argument("--batch", type=int, default=200, help="messages per transaction (default 200)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_import_mbox)


def cmd_import_mbox(args: Any, settings: Settings) -> int:
    from passerelle.db import make_engine, make_session_factory, migrate

    migrate(settings.database.url)
    engine = make_engine(settings.database.url, busy_timeout=settings.database.sqlite_busy_timeout)
    try:
        factory = make_session_factory(engine)
        try:
            total = total_bytes(args.file)
            progress = None if args.quiet else ProgressBar(total)
            report = import_archive(
                settings, factory, args.file, list_name=args.list_name, now=datetime.now(UTC), progress=progress,
                batch_size=args.batch, unescape=not args.no_unescape,
            )
        except ArchiveError as exc:
            print(f"import-mbox: {exc}", file=sys.stderr)
            return 1
    finally:
        engine.dispose()
    print(report.format())
    return 0
