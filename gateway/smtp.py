"""The inbound SMTP gateway (aiosmtpd): refuse what is not ours at RCPT, spool before answering 250.

RFC 5321 lets a server refuse a recipient (550 at RCPT) or defer the whole message (4xx after DATA); the
sender's MTA then bounces (5xx) or retries for days (4xx). So: everything we cannot take for good reason is
a 5xx with a reason a human can act on, and everything we cannot take *now* (database down, disk full) is a
451, never a lost message. The 250 is only said once the raw bytes are committed (gateway.inbound).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from passerelle.config import Settings
from passerelle.db import session_scope

from .inbound import spool_for_lists
from .recipients import ListAddress, classify_local, list_names, split_address

log = logging.getLogger(__name__)

REPLY_TEMPFAIL_STORE = "451 4.3.0 temporarily unable to store the message, try again later"
# Seconds the known list names are reused at RCPT before being read again (an unknown name is always
# checked against the database, so a list created a second ago is found).
LIST_NAMES_TTL = 30.0
REPLY_TEMPFAIL_LOOKUP = "451 4.3.0 temporarily unable to check this recipient, try again later"
_TARGETS_ATTR = "passerelle_targets"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class WriteGate:
    """One writing transaction at a time within this process, SMTP spool commits first.

    SQLite has one writer at a time, and a writer that finds the database locked sleeps in SQLite's busy
    handler (up to 100 ms between tries). A worker starting its next transaction right after each commit
    would keep SMTP sessions asleep there: every sender would wait seconds for its 250. So the worker and
    the deliverer take :meth:`background` around each transaction, the SMTP handler takes :meth:`spool`
    around its commit: they queue here, in Python, and a waiting spool goes before the next background
    transaction. (On PostgreSQL this only orders the threads of one process; other processes are unaffected.)
    """

    def __init__(self, *, background_patience: float = 5.0) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._spools_waiting = 0
        self.background_patience = background_patience

    @contextmanager
    def spool(self) -> Iterator[None]:
        with self._cond:
            self._spools_waiting += 1
            try:
                self._cond.wait_for(lambda: not self._busy)
            finally:
                self._spools_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def spool_waiting(self) -> bool:
        """Whether an SMTP commit waits for the gate (a background transaction should end soon)."""
        return self._spools_waiting > 0

    @contextmanager
    def background(self) -> Iterator[None]:
        with self._cond:
            # Let waiting spools go first, but never wait for them forever (a steady SMTP flood must not
            # stop the worker).
            self._cond.wait_for(lambda: not self._busy and self._spools_waiting == 0, self.background_patience)
            self._cond.wait_for(lambda: not self._busy)
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


class GatewayHandler:
    """aiosmtpd handler hooks. Database work runs in the loop's executor so one slow commit does not stall
    every other SMTP session."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[DbSession],
        *,
        clock: Callable[[], datetime],
        on_spooled: Callable[[list[int]], None] | None = None,
        gate: WriteGate | None = None,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.clock = clock
        self.on_spooled = on_spooled
        self.gate = gate or WriteGate()
        self.domain = settings.lists.domain.lower()
        self._names: list[str] = []
        self._names_until = 0.0
        self._names_lock = threading.Lock()

    def _cached_list_names(self, *, fresh: bool) -> list[str] | None:
        """The names read less than LIST_NAMES_TTL seconds ago (``fresh``: one second), or None."""
        with self._names_lock:
            age = LIST_NAMES_TTL - (self._names_until - time.monotonic())
            # "fresh" (an unknown name) re-reads at most once a second: a dictionary attack on RCPT must not
            # become a database read per guess.
            if age < (1.0 if fresh else LIST_NAMES_TTL):
                return self._names
        return None

    def _list_names(self, *, fresh: bool) -> list[str]:
        cached = self._cached_list_names(fresh=fresh)
        if cached is not None:
            return cached
        with self.gate.spool(), session_scope(self.factory) as session:
            names = list_names(session)
        with self._names_lock:
            self._names, self._names_until = names, time.monotonic() + LIST_NAMES_TTL
        return names

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        local, domain = split_address(address)
        if not local:
            return f"553 5.1.3 <{address}>: not a valid address"
        if domain != self.domain:
            # We are not an open relay: only our own list domain is accepted.
            return f"550 5.7.1 <{address}>: relaying denied; this server only accepts mail for @{self.domain}"
        targets: dict[str, tuple[ListAddress, list[str]]] = getattr(envelope, _TARGETS_ATTR, None) or {}
        if len(envelope.rcpt_tos) >= self.settings.smtp.max_recipients:
            # RFC 5321 4.5.3.1.8: 452 tells the client to send the rest in another transaction.
            return "452 4.5.3 too many recipients in one message, send the rest separately"
        loop = asyncio.get_running_loop()
        try:
            # The names in memory need no trip to a worker thread (most recipients: one per message).
            names = self._cached_list_names(fresh=False)
            if names is None:
                names = await loop.run_in_executor(None, lambda: self._list_names(fresh=False))
            target = classify_local(local, names)
            if target is None:
                names = await loop.run_in_executor(None, lambda: self._list_names(fresh=True))
                target = classify_local(local, names)
        except Exception:
            log.exception("RCPT %s: cannot read the list names", address)
            return REPLY_TEMPFAIL_LOOKUP
        if target is None:
            shown = ", ".join(f"{n}@{self.domain}" for n in names[:10]) or "(none yet)"
            more = f" and {len(names) - 10} more" if len(names) > 10 else ""
            return (
                f"550 5.1.1 <{address}>: no such list here; lists on this server: {shown}{more}"
                f" (commands go to LIST-request@{self.domain})"
            )
        key = f"{target.list_name}\0{target.local}"
        if key in targets:
            targets[key][1].append(address)
        else:
            targets[key] = (target, [address])
        setattr(envelope, _TARGETS_ATTR, targets)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        targets: dict[str, tuple[ListAddress, list[str]]] = getattr(envelope, _TARGETS_ATTR, None) or {}
        raw = envelope.original_content
        if raw is None:
            raw = envelope.content.encode("utf-8", "surrogateescape") if isinstance(envelope.content, str) else b""
        if not targets:
            return "503 5.5.1 no valid recipients"
        if not raw.strip():
            return "554 5.6.0 empty message refused"
        mail_from = str(envelope.mail_from or "")
        if mail_from == "<>":
            mail_from = ""
        spool_targets = [(target.list_name, addresses) for target, addresses in targets.values()]
        now = self.clock()
        loop = asyncio.get_running_loop()

        def _spool() -> list[int]:
            with self.gate.spool():
                return spool_for_lists(
                    self.factory, raw, source="smtp", envelope_from=mail_from, targets=spool_targets, now=now
                )

        try:
            row_ids = await asyncio.wait_for(
                loop.run_in_executor(None, _spool), timeout=self.settings.smtp.commit_timeout
            )
        except TimeoutError:
            # The commit may still complete: the sender's retry then makes a second row, which the worker
            # recognises as a duplicate by Message-ID. Better twice than never.
            log.error("spool commit took more than %ss: answered 451", self.settings.smtp.commit_timeout)
            return REPLY_TEMPFAIL_STORE
        except Exception:
            log.exception("cannot spool a %d-byte message from <%s>: answered 451", len(raw), mail_from)
            return REPLY_TEMPFAIL_STORE
        if self.on_spooled is not None:
            try:
                self.on_spooled(row_ids)
            except Exception:
                log.exception("on_spooled callback failed (the message is spooled and will be processed)")
        return "250 2.0.0 queued as " + " ".join(f"#{i}" for i in row_ids)

    async def handle_exception(self, error: Exception) -> str:
        log.exception("SMTP session error: %s", error)
        return "451 4.3.0 local error in processing, try again later"


# RFC 5321 4.1.2 Path of the common shape: "<" Dot-string "@" dot-atom domain ">", then the ESMTP
# parameters. Such a path needs none of what aiosmtpd's full RFC 5322 parser (email._header_value_parser)
# is there for (quoted local parts, comments, folding, source routes, 8-bit SMTPUTF8 addresses), and that
# parser costs more than the rest of MAIL or RCPT; everything else still goes through it.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(rf"[ \t]*<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?=[ \t]|$)")


class _GatewaySMTP(SMTP):
    def __init__(self, handler: Any, *, line_length_limit: int, **kwargs: Any) -> None:
        # RFC 5321 4.5.3.1.6 caps lines at 1000 octets, but real clients (HTML mail, long base64 lines from
        # broken webmails) exceed it and every MTA accepts them: be lenient up to a configured bound.
        self.line_length_limit = line_length_limit
        super().__init__(handler, **kwargs)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """The address of a MAIL FROM / RCPT TO argument and the rest (its parameters), as aiosmtpd's own
        parser returns them; the plain "<local@domain>" of nearly every client is split without it."""
        match = _SIMPLE_PATH.match(arg) if arg else None
        # The white space after the path goes with it (as with aiosmtpd's parser); a comment there is its job.
        rest = arg[match.end():].lstrip(" \t") if match is not None else ""
        if match is None or rest.startswith("("):
            return super()._getaddr(arg)
        address = match.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest


class GatewayController(Controller):
    """An aiosmtpd Controller running our SMTP subclass; ``port`` is the bound port."""

    def __init__(self, handler: GatewayHandler, *, line_length_limit: int, **kwargs: Any) -> None:
        self._line_length_limit = line_length_limit
        super().__init__(handler, **kwargs)

    def factory(self) -> SMTP:
        return _GatewaySMTP(self.handler, line_length_limit=self._line_length_limit, **self.SMTP_kwargs)


def build_controller(
    settings: Settings,
    factory: sessionmaker[DbSession],
    *,
    clock: Callable[[], datetime],
    on_spooled: Callable[[list[int]], None] | None = None,
    gate: WriteGate | None = None,
) -> GatewayController:
    """A ready-to-start SMTP controller on settings.smtp.host:port (port 0: a free port is chosen).
    ``gate``: shared with the worker and deliverer of the same process (see WriteGate)."""
    host = settings.smtp.host
    port = settings.smtp.port or _free_port(host)
    handler = GatewayHandler(settings, factory, clock=clock, on_spooled=on_spooled, gate=gate)
    return GatewayController(
        handler,
        line_length_limit=max(1001, int(settings.smtp.max_line_length)),
        hostname=host,
        port=port,
        server_hostname=settings.smtp.hostname,
        ident="Passerelle",
        decode_data=False,
        data_size_limit=settings.lists.max_message_bytes or None,
        enable_SMTPUTF8=True,
    )


__all__ = ["GatewayController", "GatewayHandler", "WriteGate", "build_controller"]
