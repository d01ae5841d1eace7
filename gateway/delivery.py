"""Outbox -> SMTP relay: every copy and notice leaves through here, after the transaction that queued it.

One connection per batch, one SMTP transaction per outbox row (each copy has its own VERP return path
and its own unsubscribe link, so recipients cannot share a transaction). The relay's answer is recorded
per row: 2xx sent; 4xx or a network failure retried with exponential backoff (RFC 5321 4.5.4.1 asks for
retries spread over days); 5xx failed with the relay's words kept for operators. One bad recipient never
blocks the others.

A 5xx for the recipient (to RCPT TO, or to the DATA of that recipient's own transaction) is the same news a
DSN would bring later: it is scored by gateway.bounce_score exactly as a DSN with those words would be
(gateway.bounces.parse.relay_refusal), in the transaction that records the row, so a dead address is
disabled after the same number of posts whichever way the refusal arrives. A 5xx to MAIL FROM refuses our
return path, and a message the relay cannot carry is about the message: neither says anything of the
member's mailbox, neither is scored. 4xx answers are retried, never scored (RFC 5321 4.2.1: transient).
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
import ssl
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm import Session, sessionmaker, undefer

from passerelle import tokens
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.mail.addresses import verp_encode
from passerelle.models import InboundMessage, MailingList, Message, OutboxMessage

from .bounce_score import record_bounce
from .bounces.parse import relay_refusal
from .claims import claim_ids, worker_identity
from .compose import CopyHeaders, CopyTemplate, normalize_line_endings, post_copy_template
from .dmarc import DmarcChecker
from .inbound import sniff_message_id

log = logging.getLogger(__name__)

UNSUBSCRIBE_PURPOSE = "unsubscribe"
MAX_ERRORS_KEPT = 100


@dataclass
class DeliveryStats:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)

    def note(self, error: str) -> None:
        """Keep the first errors for the caller (every one is in its outbox row and in the log anyway)."""
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(error)

    def add(self, other: DeliveryStats) -> None:
        self.claimed += other.claimed
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.batches += other.batches
        for error in other.errors:
            self.note(error)


@dataclass
class _Outgoing:
    row_id: int
    recipient: str
    envelope_from: str
    data: bytes | None
    attempts: int
    created_at: datetime
    # Set when the copy cannot be built at all (a bug or missing data): recorded as failed.
    build_error: str = ""
    # (code, text) of the relay's answer; code 0 for a network failure.
    result: tuple[int, str] | None = None
    list_id: int | None = None
    # The SMTP command a 5xx answered when it was about this recipient: "RCPT" or "DATA" ("" otherwise:
    # accepted, MAIL FROM refused, or a message the relay cannot carry). Only those refusals are bounces.
    refused_at: str = ""
    # The 7-bit form of ``data``, for a relay that did not announce 8BITMIME (CopyTemplate.tail_7bit).
    data_7bit: bytes | None = None


def unsubscribe_url(settings: Settings, list_name: str, recipient: str, *, now: datetime | None = None) -> str:
    """The one-click unsubscribe link of one recipient (RFC 8058): /u/<signed token>."""
    return unsubscribe_links(settings, now=now)(list_name, recipient)


def unsubscribe_links(settings: Settings, *, now: datetime | None = None) -> Callable[[str, str], str]:
    """:func:`unsubscribe_url` for many recipients: ``(list name, recipient) -> link``, key read once."""
    sign = tokens.signer(settings, UNSUBSCRIBE_PURPOSE, now=now)
    base = settings.site.base_url.rstrip("/")

    def link(list_name: str, recipient: str) -> str:
        return f"{base}/u/{sign({'list': list_name, 'email': recipient.lower()})}"

    return link


def retry_delay(settings: Settings, attempts: int) -> timedelta:
    """Wait before attempt ``attempts + 1``: retry_initial_seconds doubled each time, capped."""
    initial = max(1, int(settings.relay.retry_initial_seconds))
    cap = max(initial, int(settings.relay.retry_max_seconds))
    return timedelta(seconds=min(cap, initial * (2 ** min(max(attempts - 1, 0), 30))))


def _bounce_address(settings: Settings, list_name: str, recipient: str) -> str:
    try:
        return verp_encode(f"{list_name}-bounces", settings.lists.domain, recipient)
    except ValueError:
        return f"{list_name}-bounces@{settings.lists.domain}"


def _claim(settings: Settings, factory: sessionmaker[Session], *, now: datetime, worker_id: str) -> list[int]:
    stale = now - timedelta(seconds=settings.worker.claim_timeout)
    with session_scope(factory) as session:
        return claim_ids(
            session,
            OutboxMessage,
            where=or_(
                and_(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now),
                # A deliverer that died mid-batch: its rows are taken over. A copy may then go out twice
                # (sent, then the process died before recording it), never zero times.
                and_(OutboxMessage.status == "sending", OutboxMessage.claimed_at < stale),
            ),
            order_by=(OutboxMessage.next_attempt_at, OutboxMessage.id),
            limit=max(1, int(settings.relay.batch_size)),
            status="sending",
            worker_id=worker_id,
            now=now,
        )


@dataclass
class _Batch:
    rows: list[OutboxMessage]
    lists: dict[int, MailingList]
    messages: dict[int, Message]
    raws: dict[int, bytes]
    payloads: dict[int, bytes | None]


def _load(factory: sessionmaker[Session], ids: list[int]) -> _Batch:
    """Everything the batch needs, in one short read; the copies are built after it (DNS lookups for DMARC
    must not run while a transaction holds SQLite's write lock)."""
    with session_scope(factory) as session:
        rows = list(
            session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(ids)).order_by(OutboxMessage.id))
        )
        list_ids = {r.list_id for r in rows if r.list_id is not None}
        lists = {ml.id: ml for ml in session.scalars(select(MailingList).where(MailingList.id.in_(list_ids)))}
        message_pks = {r.message_pk for r in rows if r.kind == "post" and r.message_pk is not None}
        messages = {
            m.id: m
            for m in session.scalars(
                select(Message).where(Message.id.in_(message_pks)).options(undefer(Message.body_text))
            )
        }
        inbound_ids = {m.inbound_id for m in messages.values() if m.inbound_id is not None}
        raws: dict[int, bytes] = {
            row.id: row.raw
            for row in session.execute(
                select(InboundMessage.id, InboundMessage.raw).where(InboundMessage.id.in_(inbound_ids))
            )
        }
        payload_ids = [r.id for r in rows if r.kind != "post" or r.message_pk is None]
        payloads: dict[int, bytes | None] = {
            row.id: row.payload
            for row in session.execute(
                select(OutboxMessage.id, OutboxMessage.payload).where(OutboxMessage.id.in_(payload_ids))
            )
        }
    return _Batch(rows, lists, messages, raws, payloads)


def _prepare(settings: Settings, batch: _Batch, *, now: datetime, dmarc: DmarcChecker | None) -> list[_Outgoing]:
    rows, lists, messages, raws, payloads = batch.rows, batch.lists, batch.messages, batch.raws, batch.payloads
    default_list = settings.lists.default_list
    strict_cache: dict[str, bool] = {}
    # Every copy of a post is the same but for its List-Unsubscribe: built once per post (and list, and From
    # rewriting), rendered per recipient.
    templates: dict[tuple[int, int, bool], CopyTemplate] = {}
    links = unsubscribe_links(settings, now=now)
    out: list[_Outgoing] = []
    for row in rows:
        ml = lists.get(row.list_id) if row.list_id is not None else None
        list_name = ml.name if ml is not None else default_list
        item = _Outgoing(
            row_id=row.id,
            recipient=row.recipient,
            envelope_from=_bounce_address(settings, list_name, row.recipient),
            data=None,
            attempts=row.attempts,
            created_at=row.created_at,
            list_id=row.list_id,
        )
        try:
            if row.kind == "post" and row.message_pk is not None:
                message = messages.get(row.message_pk)
                if message is None or ml is None:
                    raise LookupError(f"post copy of message #{row.message_pk}: message or list is gone")
                raw = raws.get(message.inbound_id) if message.inbound_id is not None else None
                if not raw:
                    raise LookupError(f"message #{message.id}: its original bytes are missing from the spool")
                rewrite = False
                if settings.dmarc.enabled and dmarc is not None and message.from_addr:
                    domain = message.from_addr.rpartition("@")[2].lower()
                    if domain not in strict_cache:
                        strict_cache[domain] = dmarc.is_strict(domain)
                    rewrite = strict_cache[domain]
                key = (message.id, ml.id, rewrite)
                template = templates.get(key)
                if template is None:
                    info = CopyHeaders(
                        list_name=ml.name,
                        list_title=ml.title or ml.name,
                        topic_id=message.topic_id,
                        message_id=message.message_id,
                        unsubscribe_url="",
                    )
                    template = templates[key] = post_copy_template(
                        settings,
                        raw,
                        info,
                        author_name=message.from_name,
                        author_addr=message.from_addr,
                        rewrite_from=rewrite,
                        add_message_id=sniff_message_id(raw) != message.message_id,
                        replacement_text=message.body_text if message.body_edited else None,
                        replacement_subject=message.subject if message.body_edited else None,
                    )
                link = links(ml.name, row.recipient)
                item.data = template.render(link)
                if template.tail_7bit is not None:
                    item.data_7bit = template.render(link, eight_bit=False)
            else:
                payload = payloads.get(row.id)
                if not payload:
                    raise LookupError(f"outbox #{row.id} ({row.kind}) has no payload")
                item.data = normalize_line_endings(payload)
        except Exception as exc:
            log.exception("outbox #%s to %s: cannot build the message", row.id, row.recipient)
            item.build_error = f"cannot build the message: {type(exc).__name__}: {exc}"[:1000]
        out.append(item)
    return out


# An addr-spec of RFC 5321 dot-atoms only: every VERP return path, and nearly every member's address.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


def _quote(address: str) -> str:
    """smtplib.quoteaddr, which runs email.utils.parseaddr on every address (two per copy: a good share of
    the time spent sending one), without the parsing when the address is a plain addr-spec (which
    quoteaddr would return unchanged between brackets)."""
    return f"<{address}>" if _PLAIN_ADDRESS.fullmatch(address) else smtplib.quoteaddr(address)


class _RelaySMTP(smtplib.SMTP):
    """smtplib.SMTP whose MAIL FROM and RCPT TO quote addresses with _quote (the commands are otherwise
    those of smtplib)."""

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        optionlist = ""
        if options and self.does_esmtp:
            if any(x.lower() == "smtputf8" for x in options):
                if self.has_extn("smtputf8"):
                    self.command_encoding = "utf-8"
                else:
                    raise smtplib.SMTPNotSupportedError("SMTPUTF8 not supported by server")
            optionlist = " " + " ".join(options)
        self.putcmd("mail", f"FROM:{_quote(sender)}{optionlist}")
        return self.getreply()

    def rcpt(self, recip: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        optionlist = ""
        if options and self.does_esmtp:
            optionlist = " " + " ".join(options)
        self.putcmd("rcpt", f"TO:{_quote(recip)}{optionlist}")
        return self.getreply()


class _RelaySMTPSSL(smtplib.SMTP_SSL):
    mail = _RelaySMTP.mail
    rcpt = _RelaySMTP.rcpt


def _connect(settings: Settings) -> smtplib.SMTP:
    relay = settings.relay
    timeout = float(relay.timeout)
    local_hostname = settings.smtp.hostname or None
    conn: smtplib.SMTP
    if relay.security == "tls":
        conn = _RelaySMTPSSL(
            relay.host, relay.port, local_hostname=local_hostname, timeout=timeout,
            context=ssl.create_default_context(),
        )
    else:
        conn = _RelaySMTP(relay.host, relay.port, local_hostname=local_hostname, timeout=timeout)
    try:
        conn.ehlo_or_helo_if_needed()
        if relay.security == "starttls":
            conn.starttls(context=ssl.create_default_context())
            conn.ehlo()
        elif relay.security not in ("none", "tls"):
            raise ValueError(f"relay.security must be none, starttls or tls, not {relay.security!r}")
        if relay.username:
            password = os.environ.get(relay.password_env, "")
            if not password:
                raise smtplib.SMTPAuthenticationError(
                    530, f"relay.username is set but ${relay.password_env} is empty".encode()
                )
            conn.login(relay.username, password)
    except BaseException:
        conn.close()
        raise
    return conn


def _reply_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _body_for(conn: smtplib.SMTP, item: _Outgoing) -> tuple[bytes, list[str]]:
    """The bytes to send and the MAIL FROM parameters: RFC 6152 lets 8-bit data through only to a relay that
    announced 8BITMIME, declared with BODY=8BITMIME; to one that did not, a copy whose body we labelled goes
    in its quoted-printable form (other 8-bit originals go as they came, as before: their bytes are what
    their DKIM signature covers)."""
    assert item.data is not None
    eight_bit_relay = conn.has_extn("8bitmime")
    if item.data_7bit is not None and not eight_bit_relay:
        return item.data_7bit, []
    if eight_bit_relay and not item.data.isascii():
        return item.data, ["BODY=8BITMIME"]
    return item.data, []


def _send_one(conn: smtplib.SMTP, item: _Outgoing) -> tuple[int, str]:
    """(code, text) of the relay's final answer for this row (``item.refused_at`` set when it was the
    recipient's refusal); raises on connection failure."""
    assert item.data is not None
    try:
        data, options = _body_for(conn, item)
        refused = conn.sendmail(item.envelope_from, [item.recipient], data, options)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()), (550, b"recipient refused"))
        item.refused_at = "RCPT"
        return int(code), _reply_text(text)
    except smtplib.SMTPSenderRefused as exc:
        return int(exc.smtp_code), "sender refused: " + _reply_text(exc.smtp_error)
    except smtplib.SMTPDataError as exc:
        # One recipient per transaction: a refusal of the data is the answer for this recipient's copy.
        item.refused_at = "DATA"
        return int(exc.smtp_code), _reply_text(exc.smtp_error)
    except smtplib.SMTPNotSupportedError as exc:
        # e.g. an 8-bit or SMTPUTF8 message and a relay that does not announce the extension.
        return 554, f"relay does not support what the message needs: {exc}"
    if refused:
        code, text = next(iter(refused.values()))
        item.refused_at = "RCPT"
        return int(code), _reply_text(text)
    return 250, "OK"


def _send_batch(settings: Settings, items: list[_Outgoing]) -> None:
    todo = [i for i in items if not i.build_error]
    conn: smtplib.SMTP | None = None
    connect_failures = 0
    last_connect_error = ""
    try:
        for item in todo:
            if conn is None:
                if connect_failures >= 2:
                    item.result = (0, last_connect_error)
                    continue
                try:
                    conn = _connect(settings)
                except (OSError, smtplib.SMTPException, ValueError) as exc:
                    connect_failures += 1
                    last_connect_error = f"cannot connect to relay {settings.relay.host}:{settings.relay.port}: {exc}"
                    log.warning("%s", last_connect_error)
                    item.result = (0, last_connect_error)
                    continue
            try:
                item.result = _send_one(conn, item)
            except (OSError, smtplib.SMTPException) as exc:
                # The connection broke (timeout, reset, 421): this row is retried later, the next rows
                # get a new connection.
                item.result = (0, f"relay connection failed: {type(exc).__name__}: {exc}")
                log.warning("outbox #%s to %s: %s", item.row_id, item.recipient, item.result[1])
                try:
                    conn.close()
                finally:
                    conn = None
    finally:
        if conn is not None:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()


def _record(
    settings: Settings, factory: sessionmaker[Session], items: list[_Outgoing], *, now: datetime, stats: DeliveryStats
) -> None:
    give_up = timedelta(hours=float(settings.relay.retry_for_hours))
    # Rows whose results set the same columns are written by one executemany (a batch is mostly "sent").
    writes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    bounced: list[_Outgoing] = []
    with session_scope(factory) as session:
        for item in items:
            values: dict[str, Any] = {"claimed_by": "", "claimed_at": None}
            if item.build_error:
                values.update(status="failed", last_error=item.build_error, attempts=item.attempts + 1)
                stats.failed += 1
                stats.note(f"#{item.row_id} {item.recipient}: {item.build_error}")
            else:
                code, text = item.result or (0, "not attempted")
                attempts = item.attempts + 1
                values["attempts"] = attempts
                if 200 <= code < 300:
                    values.update(status="sent", sent_at=now, last_error="")
                    stats.sent += 1
                elif code >= 500:
                    values.update(status="failed", last_error=f"{code} {text}"[:2000])
                    stats.failed += 1
                    stats.note(f"#{item.row_id} {item.recipient}: {code} {text}")
                    log.warning("outbox #%s to %s refused by relay: %s %s", item.row_id, item.recipient, code, text)
                    if item.refused_at and item.list_id is not None:
                        bounced.append(item)
                else:
                    error = f"{code} {text}" if code else text
                    if now - item.created_at >= give_up:
                        values.update(
                            status="failed",
                            last_error=f"gave up after {attempts} attempts over {settings.relay.retry_for_hours}h:"
                            f" {error}"[:2000],
                        )
                        stats.failed += 1
                        stats.note(f"#{item.row_id} {item.recipient}: gave up: {error}")
                    else:
                        values.update(
                            status="pending", last_error=error[:2000],
                            next_attempt_at=now + retry_delay(settings, attempts),
                        )
                        stats.retried += 1
            names = tuple(sorted(values))
            writes.setdefault(names, []).append(
                {"row_id": item.row_id, **{f"new_{name}": value for name, value in values.items()}}
            )
        for names, params in writes.items():
            session.execute(_record_statement(names), params)
        if bounced:
            _score_refusals(session, settings, bounced, now=now)


def _score_refusals(session: Session, settings: Settings, items: list[_Outgoing], *, now: datetime) -> None:
    """Feed the relay's permanent refusals of recipients to the bounce score (see the module docstring);
    disabling delivery queues its notices in this same transaction."""
    lists = {ml.id: ml for ml in session.scalars(
        select(MailingList).where(MailingList.id.in_({i.list_id for i in items})))}
    for item in items:
        mailing_list = lists.get(item.list_id) if item.list_id is not None else None
        if mailing_list is None or item.result is None:
            continue
        code, text = item.result
        try:
            # A savepoint: whatever goes wrong in scoring one refusal, the rows' results are still recorded
            # (losing them would send every copy of the batch again).
            with session.begin_nested():
                bounce = relay_refusal(item.recipient, code, text, stage=item.refused_at, sender=item.envelope_from)
                record_bounce(
                    session, settings, mailing_list=mailing_list, address=bounce.address, hard=bounce.hard,
                    now=now, status=bounce.status or "", reason=bounce.reason, diagnostic=bounce.diagnostic,
                    action=bounce.action,
                )
        except Exception:
            log.exception("outbox #%s to %s: the relay's refusal could not be scored as a bounce",
                          item.row_id, item.recipient)


_RECORDS: dict[tuple[str, ...], Any] = {}


def _record_statement(names: tuple[str, ...]) -> Any:
    statement = _RECORDS.get(names)
    if statement is None:
        table = OutboxMessage.__table__
        statement = (
            update(table)
            .where(table.c.id == bindparam("row_id"))
            .values({table.c[name]: bindparam(f"new_{name}") for name in names})
        )
        _RECORDS[names] = statement
    return statement


def deliver_pending(
    settings: Settings,
    factory: sessionmaker[Session],
    *,
    now: datetime,
    resolver: Any = None,
    dmarc: DmarcChecker | None = None,
    max_batches: int | None = None,
    worker_id: str | None = None,
    gate: Callable[[], AbstractContextManager[Any]] | None = None,
) -> DeliveryStats:
    """Send every outbox row due at ``now`` (batch after batch) and record each result.

    ``dmarc``: a long-lived checker (its cache is kept between calls); otherwise one is made for this call
    from ``resolver`` (a dnspython-like stub in tests, None for the system resolver). ``gate``: a context
    manager factory entered around each transaction (the service's WriteGate.background).
    """
    around = gate or nullcontext
    if dmarc is None and settings.dmarc.enabled:
        dmarc = DmarcChecker.from_settings(settings, resolver=resolver)
    worker_id = worker_id or worker_identity("delivery")
    stats = DeliveryStats()
    while max_batches is None or stats.batches < max_batches:
        with around():
            ids = _claim(settings, factory, now=now, worker_id=worker_id)
        if not ids:
            break
        stats.batches += 1
        stats.claimed += len(ids)
        with around():
            batch = _load(factory, ids)
        items = _prepare(settings, batch, now=now, dmarc=dmarc)
        _send_batch(settings, items)
        with around():
            _record(settings, factory, items, now=now, stats=stats)
        if all(i.result is not None and i.result[0] == 0 for i in items if not i.build_error) and items:
            # The relay is unreachable: stop here, the rows are rescheduled with backoff.
            break
    if stats.claimed:
        log.info(
            "delivery: %d sent, %d to retry, %d failed (%d batch(es))",
            stats.sent, stats.retried, stats.failed, stats.batches,
        )
    return stats


__all__ = ["DeliveryStats", "deliver_pending", "retry_delay", "unsubscribe_links", "unsubscribe_url"]
