"""IMAP ingestion: read a mailbox on an existing mail system into the inbound spool, exactly once.

Many organisations cannot point an MX at the forum: they give it a mailbox instead. Each configured
account ([[imap.accounts]]) is read by one :class:`ImapFetcher` in its own thread (:class:`ImapService`):

* Where we stand is the RFC 3501 pair (UIDVALIDITY, last UID) kept in ``imap_cursors``. UIDs only grow
  within one UIDVALIDITY, so "UIDs above last_uid" is exactly the mail not read yet.
* Bodies are fetched with ``BODY.PEEK[]``, which, unlike ``BODY[]``/``RFC822``, does not set \\Seen: a
  message looks untouched on the server until its bytes are committed.
* The spool rows and the cursor move forward in ONE database transaction. Only after that commit is the
  mail marked processed on the server (moved to ``processed_folder``, or flagged \\Seen). A crash between
  the commit and the marking leaves mail on the server that the cursor has already passed: it is never
  spooled twice, and the next session marks it (``_reconcile``). The worker's Message-ID dedupe remains
  the second guard.
* A new UIDVALIDITY (the mailbox was recreated, or the server rebuilt its index) invalidates every UID we
  knew: the mailbox is read again from UID 1, and messages whose Message-ID is already in the spool or the
  archive (or, without a Message-ID, whose exact bytes are) are not spooled again.
* Network faults (server down, connection dropped, login refused) are logged with the account name,
  recorded on the cursor row (last_error/last_error_at, shown by :func:`imap_status`) and retried with
  exponential backoff; they never leave the account's thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import LoginError
from imapclient.imapclient import _parse_untagged_response
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from passerelle.config import ConfigError, Settings
from passerelle.db import session_scope
from passerelle.models import ImapCursor, InboundMessage, Message

from .inbound import add_spool_rows, sniff_message_id

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
OnSpooled = Callable[[Sequence[int]], None]

SECURITY_MODES = ("tls", "starttls", "none")
# A keyword (RFC 3501 flag without a backslash) on mail we leave in the mailbox because it is too large,
# so that a person looking at the mailbox can find it, and so that it is never marked processed.
TOO_LARGE_KEYWORD = "$PasserelleTooLarge"
SEEN = b"\\Seen"
DELETED = b"\\Deleted"
# Most bytes fetched in one round trip (one message larger than this is fetched alone).
BATCH_BYTES = 32 * 1024 * 1024
# UIDs whose sizes are asked for at once before fetching bodies.
SIZE_WINDOW = 1000
# How often a thread waiting in IDLE looks at its stop event (seconds).
IDLE_TICK = 0.25

_ACCOUNT_DEFAULTS: dict[str, Any] = {
    "name": "",
    "host": "",
    "port": 0,
    "security": "tls",
    "ca_file": "",
    "username": "",
    "password_env": "",
    "password_file": "",
    "folder": "INBOX",
    "processed_folder": "",
    "list": "",
    "idle": True,
    "batch_size": 50,
    "timeout": 60.0,
}
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
_RETURN_PATH = re.compile(rb"^return-path:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class _Position:
    """Where one session starts: the mailbox's UIDVALIDITY, the last UID spooled, and whether this is a
    re-scan (then the cursor still holds ``old_uidvalidity``/``old_folder`` until the re-scan completes)."""

    uidvalidity: int
    last_uid: int
    rescan: bool
    old_uidvalidity: int | None
    old_folder: str


class ImapError(Exception):
    """An IMAP account could not be read this time (the message says why, with the account name)."""


@dataclass(frozen=True)
class ImapAccount:
    """One validated [[imap.accounts]] entry. Build it with :meth:`from_mapping`."""

    name: str
    host: str
    port: int
    security: str
    ca_file: str
    username: str
    password_env: str
    password_file: str
    folder: str
    processed_folder: str
    list_name: str
    idle: bool
    batch_size: int
    timeout: float

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> ImapAccount:
        """Validate one account table; every problem is a :class:`ConfigError` naming the account and key."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"imap.accounts: each account must be a table, got {raw!r}")
        label = str(raw.get("name") or raw.get("username") or "?")
        where = f"imap.accounts[{label}]"
        if "password" in raw:
            raise ConfigError(
                f"{where}: passwords are not read from the configuration file; name an environment "
                "variable with password_env or a file with password_file"
            )
        unknown = sorted(set(raw) - set(_ACCOUNT_DEFAULTS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(_ACCOUNT_DEFAULTS)}")
        values = dict(_ACCOUNT_DEFAULTS)
        for key, value in raw.items():
            default = _ACCOUNT_DEFAULTS[key]
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, type(default)):
                raise ConfigError(f"{where}: {key!r} must be {_TYPE_NAMES[type(default)]}, got {value!r}")
            values[key] = value.strip() if isinstance(value, str) else value
        for key in ("name", "host", "username", "list", "folder"):
            if not values[key]:
                raise ConfigError(f"{where}: {key!r} is required")
        if len(values["name"]) > 80:
            raise ConfigError(f"{where}: 'name' is longer than 80 characters")
        if values["security"] not in SECURITY_MODES:
            raise ConfigError(f"{where}: 'security' must be one of {', '.join(SECURITY_MODES)}")
        if bool(values["password_env"]) == bool(values["password_file"]):
            raise ConfigError(f"{where}: set exactly one of password_env and password_file")
        if not values["port"]:
            values["port"] = 993 if values["security"] == "tls" else 143
        if not 0 < values["port"] < 65536:
            raise ConfigError(f"{where}: 'port' must be between 1 and 65535")
        if not 1 <= values["batch_size"] <= 1000:
            raise ConfigError(f"{where}: 'batch_size' must be between 1 and 1000")
        if values["timeout"] <= 0:
            raise ConfigError(f"{where}: 'timeout' must be positive")
        if values["processed_folder"] == values["folder"]:
            raise ConfigError(f"{where}: 'processed_folder' must differ from 'folder'")
        values["list_name"] = values.pop("list")
        return cls(**values)

    def password(self, environ: Mapping[str, str]) -> str:
        """Read at each connection, so that a rotated secret is picked up without a restart."""
        if self.password_env:
            value = environ.get(self.password_env)
            if not value:
                raise ImapError(f"account {self.name}: environment variable {self.password_env} is not set")
            return value
        try:
            # A trailing newline is what `echo secret > file` leaves: it is not part of the password.
            return Path(self.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ImapError(f"account {self.name}: cannot read password file {self.password_file}: {exc}") from None


def sniff_return_path(raw: bytes) -> str:
    """The topmost Return-Path (added at final delivery, RFC 5321 4.4) without brackets; "" for <> or none."""
    head = raw[:65536]
    end = re.search(rb"\r?\n\r?\n", head)
    if end:
        head = head[: end.start()]
    match = _RETURN_PATH.search(head)
    if not match:
        return ""
    value = match.group(1).decode("ascii", "replace").strip()
    inner = re.search(r"<([^<>]*)>", value)
    return (inner.group(1) if inner else value).strip()[:320]


def describe_error(exc: BaseException) -> str:
    """A one-line reason an operator can act on."""
    if isinstance(exc, ImapError):
        return str(exc)
    if isinstance(exc, LoginError):
        return f"login refused: {_text(exc)}"
    if isinstance(exc, IMAPClient.AbortError):
        return f"connection lost: {_text(exc)}"
    if isinstance(exc, IMAPClient.Error):
        return f"server said: {_text(exc)}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failure: {exc}"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out waiting for the server"
    if isinstance(exc, OSError):
        return f"network error: {exc.strerror or exc}"
    if isinstance(exc, SQLAlchemyError):
        return f"database error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return f"{type(exc).__name__}: {exc}"


def _text(exc: BaseException) -> str:
    text = str(exc.args[0] if exc.args else exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ImapFetcher:
    """Reads one account's folder into the spool. ``run_once()`` drains it; ``run_forever()`` keeps at it."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        account: Mapping[str, Any] | ImapAccount,
        *,
        clock: Clock,
        on_spooled: OnSpooled | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.account = account if isinstance(account, ImapAccount) else ImapAccount.from_mapping(account)
        self.clock = clock
        self.on_spooled = on_spooled
        self.environ = os.environ if environ is None else environ
        self.source = f"imap:{self.account.name}"
        self.envelope_to = [settings.list_address(self.account.list_name)]
        self.max_bytes = int(settings.lists.max_message_bytes)
        self.failures = 0
        self._stopping = threading.Event()

    # -- public --------------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Connect, spool every message not read yet, mark it processed, log out; return how many were spooled.

        A failure is recorded on the account's status and raised as :class:`ImapError`.
        """
        client = None
        try:
            client = self._connect()
            return self._drain(client)
        except Exception as exc:
            reason = self._failed(exc)
            raise ImapError(f"account {self.account.name}: {reason}") from exc
        finally:
            self._disconnect(client)

    def run_forever(self, stop_event: threading.Event) -> None:
        """Drain, then wait for new mail (IDLE, or polling) until ``stop_event`` is set; faults back off."""
        initial = float(self.settings.imap.retry_initial_seconds)
        ceiling = float(self.settings.imap.retry_max_seconds)
        delay = initial
        self._stopping = stop_event
        while not stop_event.is_set():
            client = None
            try:
                client = self._connect()
                self._drain(client)
                delay = initial
                self.failures = 0
                self._watch(client, stop_event)
            except Exception as exc:
                if stop_event.is_set():
                    break
                self.failures += 1
                reason = self._failed(exc)
                log.warning("imap[%s]: %s; retrying in %.3gs", self.account.name, reason, delay)
                self._disconnect(client)
                client = None
                if stop_event.wait(delay):
                    break
                delay = min(delay * 2, ceiling)
            finally:
                self._disconnect(client)
        log.info("imap[%s]: stopped", self.account.name)

    # -- connection ----------------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        if self.account.ca_file:
            return ssl.create_default_context(cafile=self.account.ca_file)
        return ssl.create_default_context()

    def _connect(self) -> IMAPClient:
        acct = self.account
        password = acct.password(self.environ)
        context = self._ssl_context() if acct.security != "none" else None
        client = IMAPClient(
            acct.host, port=acct.port, ssl=acct.security == "tls", ssl_context=context, timeout=acct.timeout
        )
        try:
            if acct.security == "starttls":
                client.starttls(context)
            client.login(acct.username, password)
            if acct.processed_folder and not client.folder_exists(acct.processed_folder):
                client.create_folder(acct.processed_folder)
                log.info("imap[%s]: created folder %s for processed mail", acct.name, acct.processed_folder)
        except BaseException:
            self._disconnect(client)
            raise
        log.debug("imap[%s]: logged in to %s:%s as %s", acct.name, acct.host, acct.port, acct.username)
        return client

    @staticmethod
    def _disconnect(client: IMAPClient | None) -> None:
        if client is None:
            return
        try:
            client.logout()
        except Exception:
            # The connection is already gone: close the socket if anything is left of it.
            with contextlib.suppress(Exception):
                client.shutdown()

    # -- waiting for mail ----------------------------------------------------------------------------

    def _watch(self, client: IMAPClient, stop_event: threading.Event) -> None:
        use_idle = self.account.idle and client.has_capability("IDLE")
        if not use_idle:
            log.info("imap[%s]: server without IDLE (or idle=false): polling every %ss",
                     self.account.name, self.settings.imap.poll_seconds)
        while not stop_event.is_set():
            if self._mail_announced(client):
                # New mail was announced while we were draining: read it now, not at the next renewal.
                self._drain(client)
                continue
            if use_idle:
                self._idle(client, stop_event)
            elif stop_event.wait(float(self.settings.imap.poll_seconds)):
                return
            if stop_event.is_set():
                return
            self._drain(client)

    def _idle(self, client: IMAPClient, stop_event: threading.Event) -> None:
        """Wait in IDLE (RFC 2177) until the server reports new mail, the renewal period ends, or we stop."""
        renew_at = time.monotonic() + float(self.settings.imap.idle_seconds)
        client.idle()
        try:
            while not stop_event.is_set():
                remaining = renew_at - time.monotonic()
                if remaining <= 0:
                    return
                tick = min(IDLE_TICK, remaining)
                started = time.monotonic()
                responses = self._buffered_responses(client) or client.idle_check(timeout=tick)
                for response in responses:
                    if len(response) > 1 and response[1] in (b"EXISTS", b"RECENT", b"BYE"):
                        return
                    if response and response[0] == b"BYE":
                        return
                if not responses and time.monotonic() - started < tick / 2:
                    # The socket was readable but gave no line: the server closed the connection.
                    # imapclient swallows that EOF in idle_check; DONE below raises it.
                    return
        finally:
            client.idle_done()

    @staticmethod
    def _mail_announced(client: IMAPClient) -> bool:
        """Whether the server announced new mail (EXISTS/RECENT) during a command since the last SELECT.

        A server reports mail that arrives while another command runs as an untagged response to that
        command (RFC 3501 7.3.1, RFC 9051 7.4): imaplib files it away and nobody reads it, and the server
        will not repeat it once IDLE starts, so without this check such mail would wait for the next
        IDLE renewal. Reads imaplib's untagged-response store (private API, stable since Python 2).
        """
        untagged = client._imap.untagged_responses
        announced = bool(untagged.pop("EXISTS", None)) | bool(untagged.pop("RECENT", None))
        return announced

    def _buffered_responses(self, client: IMAPClient) -> list[Any]:
        """Untagged responses already read off the socket into imaplib's buffer.

        Mail that arrives between our SEARCH and IDLE is announced by the server right after "+ idling",
        often in the same packet: imaplib then buffers the EXISTS line while reading the continuation, and
        idle_check(), which polls the socket, would never see it (until the next renewal). Read such lines
        from the buffer first. imaplib's file and imapclient's response parser are private API (imapclient 3).
        """
        responses = []
        while b"\n" in self._peek(client):
            responses.append(_parse_untagged_response(client._imap._get_line()))
        return responses

    def _peek(self, client: IMAPClient) -> bytes:
        """What imaplib has buffered (plus what the socket has ready), without blocking or consuming it."""
        sock = client.socket()
        sock.setblocking(False)
        try:
            return bytes(client._imap.file.peek(1))
        except (BlockingIOError, ssl.SSLWantReadError, InterruptedError):
            return b""
        finally:
            sock.settimeout(self.account.timeout)

    # -- reading -------------------------------------------------------------------------------------

    def _drain(self, client: IMAPClient) -> int:
        acct = self.account
        selected = client.select_folder(acct.folder)
        self._mail_announced(client)  # SELECT's own EXISTS/RECENT are the mailbox's state, not news.
        uidvalidity = int(selected[b"UIDVALIDITY"])
        position = self._start_cursor(uidvalidity)
        if position.rescan:
            last_uid = 0
        else:
            last_uid = position.last_uid
            self._reconcile(client, last_uid)
        # "n:*" always matches the highest UID even when it is below n (RFC 3501 6.4.8): filter.
        new_uids = sorted(u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)
        spooled = 0
        for window in _chunks(new_uids, SIZE_WINDOW):
            sizes = self._fetch_sizes(client, window)
            for batch in self._batches(window, sizes):
                if self._stopping.is_set():
                    # The cursor is consistent after every batch: the rest waits for the next start.
                    return spooled
                spooled += self._process_batch(client, batch, sizes, position)
        if position.rescan:
            self._finish_rescan(position, max(new_uids, default=0))
        self._mark_ok()
        if spooled:
            log.info("imap[%s]: %d message(s) spooled from %s", acct.name, spooled, acct.folder)
        return spooled

    def _batches(self, uids: Sequence[int], sizes: Mapping[int, int]) -> Iterator[list[int]]:
        batch: list[int] = []
        weight = 0
        for uid in uids:
            size = sizes.get(uid, 0)
            if batch and (len(batch) >= self.account.batch_size or weight + size > BATCH_BYTES):
                yield batch
                batch, weight = [], 0
            batch.append(uid)
            weight += size
        if batch:
            yield batch

    def _start_cursor(self, uidvalidity: int) -> _Position:
        """Where to read from: after last_uid, or, when UIDVALIDITY (or the folder) changed, a re-scan."""
        acct = self.account
        with session_scope(self.factory) as session:
            cursor = session.get(ImapCursor, acct.name)
            if cursor is None:
                cursor = ImapCursor(account=acct.name, folder=acct.folder, last_uid=0, messages_spooled=0,
                                    last_error="")
                session.add(cursor)
            if cursor.uidvalidity is None:
                # Never read: nothing of this mailbox can be in the spool yet.
                cursor.folder, cursor.uidvalidity, cursor.last_uid = acct.folder, uidvalidity, 0
            if cursor.uidvalidity == uidvalidity and cursor.folder == acct.folder:
                return _Position(uidvalidity, int(cursor.last_uid or 0), rescan=False,
                                 old_uidvalidity=uidvalidity, old_folder=acct.folder)
            if cursor.folder != acct.folder:
                log.warning("imap[%s]: folder changed from %s to %s: reading %s from UID 1, skipping mail "
                            "already spooled", acct.name, cursor.folder, acct.folder, acct.folder)
            else:
                log.warning("imap[%s]: UIDVALIDITY of %s changed from %s to %s (mailbox recreated or reindexed): "
                            "re-reading it from UID 1, skipping mail already spooled",
                            acct.name, acct.folder, cursor.uidvalidity, uidvalidity)
            # The cursor keeps the old UIDVALIDITY until the re-scan is complete: if it is interrupted, the
            # next session re-scans again (skipping what this one spooled) instead of trusting a partial UID.
            return _Position(uidvalidity, 0, rescan=True, old_uidvalidity=cursor.uidvalidity,
                             old_folder=cursor.folder)

    def _finish_rescan(self, position: _Position, highest_uid: int) -> None:
        with session_scope(self.factory) as session:
            cursor = self._locked_cursor(session, position)
            cursor.folder = self.account.folder
            cursor.uidvalidity = position.uidvalidity
            cursor.last_uid = highest_uid
        log.info("imap[%s]: re-scan of %s complete (UIDVALIDITY %s, last UID %s)",
                 self.account.name, self.account.folder, position.uidvalidity, highest_uid)

    def _locked_cursor(self, session: Session, position: _Position) -> ImapCursor:
        cursor = session.execute(
            select(ImapCursor).where(ImapCursor.account == self.account.name).with_for_update()
        ).scalar_one()
        if cursor.uidvalidity != position.old_uidvalidity or cursor.folder != position.old_folder:
            raise ImapError(f"account {self.account.name}: its cursor changed under us "
                            "(is another process reading this mailbox?)")
        return cursor

    def _reconcile(self, client: IMAPClient, last_uid: int) -> None:
        """Mark processed the mail spooled by an earlier session that stopped before marking it."""
        if last_uid <= 0:
            return
        criteria: list[Any] = ["UID", f"1:{last_uid}", "NOT", "KEYWORD", TOO_LARGE_KEYWORD]
        if not self.account.processed_folder:
            criteria.append("UNSEEN")
        left = sorted(u for u in client.search(criteria) if u <= last_uid)
        if left:
            log.info("imap[%s]: marking %d message(s) spooled earlier but not yet marked processed",
                     self.account.name, len(left))
            self._mark_processed(client, left)

    def _process_batch(self, client: IMAPClient, batch: Sequence[int], sizes: Mapping[int, int],
                       position: _Position) -> int:
        acct = self.account
        too_large = [uid for uid in batch if sizes.get(uid, 0) > self.max_bytes]
        wanted = [uid for uid in batch if uid in sizes and uid not in too_large]
        bodies = self._fetch_bodies(client, wanted)
        now = self.clock()
        spooled: list[tuple[int, int, str]] = []  # (uid, row id, message-id)
        skipped: list[tuple[int, str]] = []
        with session_scope(self.factory) as session:
            cursor = self._locked_cursor(session, position)
            if position.rescan:
                known = self._already_spooled(session, bodies)
            else:
                # Another process reading the same account may have gone further: never spool twice.
                floor = int(cursor.last_uid or 0)
                bodies = {uid: raw for uid, raw in bodies.items() if uid > floor}
                known = {}
            rows: list[tuple[int, InboundMessage]] = []
            for uid in sorted(bodies):
                raw = bodies[uid]
                if uid in known:
                    skipped.append((uid, known[uid]))
                    continue
                rows += [(uid, row) for row in add_spool_rows(
                    session, raw, source=self.source, envelope_from=sniff_return_path(raw),
                    targets=[(acct.list_name, self.envelope_to)], now=now, flush=False,
                )]
            session.flush()
            spooled = [(uid, row.id, row.message_id_header) for uid, row in rows]
            if not position.rescan:
                cursor.last_uid = max(int(cursor.last_uid or 0), *batch)
            cursor.messages_spooled = int(cursor.messages_spooled or 0) + len(spooled)
            cursor.last_ok_at = now
        for uid, row_id, message_id in spooled:
            log.info("imap[%s]: UID %s spooled as inbound #%s message-id=<%s>", acct.name, uid, row_id, message_id)
        for uid, why in skipped:
            log.info("imap[%s]: UID %s not spooled again: %s", acct.name, uid, why)
        if spooled and self.on_spooled is not None:
            try:
                self.on_spooled([row_id for _, row_id, _ in spooled])
            except Exception:
                log.exception("imap[%s]: on_spooled callback failed (the messages are spooled)", acct.name)
        if too_large:
            self._leave_too_large(client, too_large, sizes)
        done = sorted([uid for uid, _, _ in spooled] + [uid for uid, _ in skipped])
        if done:
            self._mark_processed(client, done)
        return len(spooled)

    def _fetch_sizes(self, client: IMAPClient, uids: Sequence[int]) -> dict[int, int]:
        """RFC822.SIZE of each UID still in the mailbox (to batch by bytes and leave oversized mail alone)."""
        try:
            response = client.fetch(uids, ["RFC822.SIZE"])
        except IMAPClient.AbortError:
            raise
        except IMAPClient.Error as exc:
            log.info("imap[%s]: FETCH refused (%s); asking again", self.account.name, _text(exc))
            client.noop()
            response = client.fetch(uids, ["RFC822.SIZE"])
        return {uid: int(item[b"RFC822.SIZE"]) for uid, item in response.items() if b"RFC822.SIZE" in item}

    def _fetch_bodies(self, client: IMAPClient, uids: Sequence[int]) -> dict[int, bytes]:
        """Raw bytes of each UID still in the mailbox; a message expunged by someone else is just absent."""
        if not uids:
            return {}
        try:
            response = client.fetch(uids, ["BODY.PEEK[]"])
        except IMAPClient.AbortError:
            raise
        except IMAPClient.Error as exc:
            # Dovecot answers NO [EXPUNGEISSUED] when another session expunged some of them meanwhile; the
            # others are fetched again below.
            log.info("imap[%s]: FETCH refused (%s); fetching the batch again", self.account.name, _text(exc))
            response = {}
        bodies = {uid: item[b"BODY[]"] for uid, item in response.items() if item.get(b"BODY[]") is not None}
        missing = [uid for uid in uids if uid not in bodies]
        if not missing:
            return bodies
        # NOOP lets the server tell us about expunges (RFC 3501 7.4.1) before we ask what still exists.
        client.noop()
        present = set(client.search(["UID", ",".join(str(u) for u in missing)]))
        for uid in missing:
            if uid not in present:
                log.warning("imap[%s]: UID %s was expunged by another client before it could be fetched",
                            self.account.name, uid)
                continue
            try:
                item = client.fetch([uid], ["BODY.PEEK[]"]).get(uid, {})
            except IMAPClient.AbortError:
                raise
            except IMAPClient.Error as exc:
                item = {}
                log.info("imap[%s]: FETCH of UID %s refused: %s", self.account.name, uid, _text(exc))
            raw = item.get(b"BODY[]")
            if raw is not None:
                bodies[uid] = raw
            elif uid in set(client.search(["UID", str(uid)])):
                raise ImapError(f"account {self.account.name}: the server does not return UID {uid} of "
                                f"{self.account.folder}, which still exists")
            else:
                log.warning("imap[%s]: UID %s was expunged by another client while being fetched",
                            self.account.name, uid)
        return bodies

    def _already_spooled(self, session: Session, bodies: Mapping[int, bytes]) -> dict[int, str]:
        """UIDs whose message is already in the spool or the archive, with the reason (first guard)."""
        found: dict[int, str] = {}
        by_id: dict[str, list[int]] = {}
        without_id: list[int] = []
        for uid in sorted(bodies):
            message_id = sniff_message_id(bodies[uid])
            if message_id:
                by_id.setdefault(message_id, []).append(uid)
            else:
                without_id.append(uid)
        ids = list(by_id)
        seen: dict[str, str] = {}
        for chunk in _chunks(ids, 500):
            for message_id in session.scalars(select(Message.message_id).where(Message.message_id.in_(chunk))):
                seen.setdefault(message_id, "already archived")
            for row_id, message_id in session.execute(
                select(InboundMessage.id, InboundMessage.message_id_header)
                .where(InboundMessage.message_id_header.in_(chunk))
            ):
                seen.setdefault(message_id, f"already spooled as inbound #{row_id}")
        for message_id, uids in by_id.items():
            first = 0
            if message_id in seen:
                reason = f"message-id=<{message_id}> {seen[message_id]}"
            else:
                first = 1  # the mailbox holds it more than once: spool the first copy only
                reason = f"message-id=<{message_id}> appears again in this batch"
            for uid in uids[first:]:
                found[uid] = reason
        # Without a Message-ID only the exact bytes tell a copy we already read from this mailbox.
        for uid in without_id:
            raw = bodies[uid]
            twin = session.scalar(
                select(InboundMessage.id).where(
                    InboundMessage.source == self.source,
                    InboundMessage.message_id_header == "",
                    InboundMessage.size == len(raw),
                    InboundMessage.raw == raw,
                )
            )
            if twin is not None:
                found[uid] = f"no Message-ID, same bytes already spooled as inbound #{twin}"
        return found

    def _leave_too_large(self, client: IMAPClient, uids: Sequence[int], sizes: Mapping[int, int]) -> None:
        for uid in uids:
            reason = (f"UID {uid} of {self.account.folder} ({sizes[uid]} bytes) is larger than "
                      f"lists.max_message_bytes ({self.max_bytes}): left in the mailbox, flagged {TOO_LARGE_KEYWORD}")
            log.warning("imap[%s]: %s", self.account.name, reason)
            self._record_error(reason)
        try:
            client.add_flags(list(uids), [TOO_LARGE_KEYWORD.encode()], silent=True)
        except IMAPClient.AbortError:
            raise
        except IMAPClient.Error as exc:
            log.warning("imap[%s]: cannot flag UIDs %s %s: %s", self.account.name, list(uids), TOO_LARGE_KEYWORD,
                        _text(exc))

    def _mark_processed(self, client: IMAPClient, uids: Sequence[int]) -> None:
        target = self.account.processed_folder
        if not target:
            client.add_flags(list(uids), [SEEN], silent=True)
            return
        if client.has_capability("MOVE"):
            client.move(list(uids), target)  # RFC 6851: atomic
            return
        # Without MOVE: COPY, flag \Deleted, then expunge only these UIDs (RFC 4315 UID EXPUNGE). A plain
        # EXPUNGE would also remove whatever someone else flagged \Deleted, so it is the last resort.
        client.copy(list(uids), target)
        client.add_flags(list(uids), [DELETED], silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(list(uids))
        else:
            client.expunge()

    # -- status --------------------------------------------------------------------------------------

    def _mark_ok(self) -> None:
        with session_scope(self.factory) as session:
            cursor = session.get(ImapCursor, self.account.name)
            if cursor is not None:
                cursor.last_ok_at = self.clock()

    def _failed(self, exc: BaseException) -> str:
        reason = describe_error(exc)
        known = (ImapError, IMAPClient.Error, OSError, SQLAlchemyError)
        if not isinstance(exc, known):
            log.error("imap[%s]: unexpected failure", self.account.name, exc_info=exc)
        self._record_error(reason)
        return reason

    def _record_error(self, reason: str) -> None:
        try:
            with session_scope(self.factory) as session:
                cursor = session.get(ImapCursor, self.account.name)
                if cursor is None:
                    cursor = ImapCursor(account=self.account.name, folder=self.account.folder, last_uid=0,
                                        messages_spooled=0)
                    session.add(cursor)
                cursor.last_error = reason[:2000]
                cursor.last_error_at = self.clock()
        except SQLAlchemyError as exc:
            log.error("imap[%s]: cannot record the error %r: %s", self.account.name, reason, describe_error(exc))


def parse_accounts(accounts: Iterable[Mapping[str, Any]]) -> list[ImapAccount]:
    """Validate every configured account; names must be unique (they key the UID cursors)."""
    parsed = [ImapAccount.from_mapping(a) for a in accounts]
    names = [a.name for a in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"imap.accounts: duplicate name(s) {', '.join(duplicates)}")
    return parsed


class ImapService:
    """One :class:`ImapFetcher` thread per configured account; ``start()`` / ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        clock: Clock,
        *,
        on_spooled: OnSpooled | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.clock = clock
        self.accounts = parse_accounts(settings.imap.accounts)
        self.fetchers = [
            ImapFetcher(settings, factory, account, clock=clock, on_spooled=on_spooled, environ=environ)
            for account in self.accounts
        ]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("ImapService already started")
        self._stop.clear()
        for fetcher in self.fetchers:
            thread = threading.Thread(
                target=fetcher.run_forever, args=(self._stop,), name=f"imap-{fetcher.account.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
            log.info("imap[%s]: reading %s@%s:%s/%s for list %s", fetcher.account.name, fetcher.account.username,
                     fetcher.account.host, fetcher.account.port, fetcher.account.folder, fetcher.account.list_name)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("imap: thread %s did not stop within %ss", thread.name, timeout)
        self._threads = []


def imap_status(factory: sessionmaker[Session], settings: Settings | None = None) -> list[dict[str, Any]]:
    """Each account's reading position and health, for the operators' status page and CLI.

    ``state`` is "ok" (the last attempt succeeded), "failing" (the last event is an error) or "never read".
    With ``settings``, configured accounts not read yet are listed too, and accounts no longer configured
    are marked ``configured=False``.
    """
    with session_scope(factory) as session:
        cursors = {c.account: c for c in session.scalars(select(ImapCursor).order_by(ImapCursor.account))}
        session.expunge_all()
    configured: dict[str, ImapAccount] = {}
    if settings is not None:
        configured = {a.name: a for a in parse_accounts(settings.imap.accounts)}
    rows = []
    for name in sorted(set(cursors) | set(configured)):
        cursor = cursors.get(name)
        acct = configured.get(name)
        last_ok = cursor.last_ok_at if cursor else None
        last_error_at = cursor.last_error_at if cursor else None
        if last_error_at is not None and (last_ok is None or last_error_at > last_ok):
            state = "failing"
        elif last_ok is not None:
            state = "ok"
        else:
            state = "never read"
        rows.append({
            "account": name,
            "folder": cursor.folder if cursor else (acct.folder if acct else ""),
            "state": state,
            "uidvalidity": cursor.uidvalidity if cursor else None,
            "last_uid": int(cursor.last_uid or 0) if cursor else 0,
            "messages_spooled": int(cursor.messages_spooled or 0) if cursor else 0,
            "last_ok_at": last_ok,
            "last_error": (cursor.last_error or "") if cursor else "",
            "last_error_at": last_error_at,
            **({"configured": acct is not None} if settings is not None else {}),
        })
    return rows
