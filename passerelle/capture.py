"""A catch-all SMTP relay for demos and development: every mail becomes a .eml file in a folder.

It lets a new user watch the fan-out (one file per recipient) without a real MTA.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]+")


class _WriteFiles:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.counter = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.counter += 1
                name = f"{self.counter:06d}-{_UNSAFE.sub('_', rcpt)[:80]}.eml"
                header = f"X-Envelope-From: {envelope.mail_from}\r\nX-Envelope-To: {rcpt}\r\n".encode()
                (self.folder / name).write_bytes(header + data)
        log.info("captured mail from %s to %d recipient(s)", envelope.mail_from, len(envelope.rcpt_tos))
        return "250 OK captured"


class CaptureRelay:
    def __init__(self, host: str, port: int, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(_WriteFiles(self.folder), hostname=host, port=port, decode_data=False)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
