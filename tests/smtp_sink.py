"""A real SMTP server (aiosmtpd) for tests: records every envelope, and can be told to refuse."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    # The MAIL FROM parameters (e.g. BODY=8BITMIME).
    mail_options: list[str] = field(default_factory=list)

    @property
    def message(self) -> Message:
        return message_from_bytes(self.data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)
    # recipient address -> SMTP reply given at RCPT ("550 5.1.1 no such user", "451 4.3.0 try later").
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    # When set, every DATA is answered with this reply instead of 250.
    refuse_data: str | None = None
    # When set, EHLO does not announce 8BITMIME (RFC 6152): a relay that only carries 7-bit data.
    no_8bitmime: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [r for r in responses if not (self.no_8bitmime and r == "250-8BITMIME")]

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.refuse_rcpt.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse_data:
            return self.refuse_data
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        with self.arrived:
            self.received.append(
                Received(str(envelope.mail_from), list(envelope.rcpt_tos), data, list(envelope.mail_options))
            )
            self.arrived.notify_all()
        return "250 Message accepted for delivery"


class SmtpSink:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.handler = _Handler()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, decode_data=False, data_size_limit=None,
            server_kwargs={"enable_SMTPUTF8": True},
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def clear(self) -> None:
        with self.handler.lock:
            self.handler.received.clear()

    def deliveries(self) -> list[tuple[str, Received]]:
        """(recipient, envelope) for every recipient of every message."""
        return [(rcpt, r) for r in self.received for rcpt in r.rcpt_tos]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least ``count`` recipient deliveries arrived; fail the test if they don't."""
        deadline = time.monotonic() + timeout
        with self.handler.arrived:
            while sum(len(r.rcpt_tos) for r in self.handler.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = sum(len(r.rcpt_tos) for r in self.handler.received)
                    raise AssertionError(f"SMTP sink: expected {count} deliveries, got {got} in {timeout}s")
                self.handler.arrived.wait(left)
            return list(self.handler.received)

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
