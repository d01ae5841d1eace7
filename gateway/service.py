"""The gateway as one service: SMTP listener, spool worker thread and delivery thread.

The SMTP handler wakes the worker as soon as a message is spooled; the worker wakes the deliverer when it
queued copies; both also poll every worker.poll_interval seconds (retries that came due, rows spooled by
another process or by IMAP). stop() stops accepting mail first, then lets both threads finish the row
they are on: whatever is left is in the database and picked up at the next start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from passerelle.config import Settings

from .claims import worker_identity
from .delivery import deliver_pending
from .dmarc import DmarcChecker
from .smtp import GatewayController, WriteGate, build_controller
from .worker import process_pending

log = logging.getLogger(__name__)

# Spool rows per worker pass; a pass that processed fewer emptied the spool.
WORKER_PASS_ROWS = 100
# After a pass that emptied the spool, the worker lets the next posts gather this long before the next
# pass: one transaction then archives several of them (on SQLite a commit costs more than a small post),
# and the SMTP sessions spooling them do not queue behind a worker transaction for every message. Under a
# backlog the worker goes on at once.
WORKER_GATHER_SECONDS = 0.02


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Loop:
    """A thread that runs ``step`` when woken or every ``interval`` seconds, until stopped."""

    def __init__(self, name: str, step: Callable[[], bool], interval: float) -> None:
        self.name = name
        self.step = step
        self.interval = max(0.01, float(interval))
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._failing = False

    def _run(self) -> None:
        log.info("%s started", self.name)
        while not self.stopping.is_set():
            try:
                busy = self.step()
                if self._failing:
                    log.info("%s: working again", self.name)
                self._failing = False
            except Exception:
                busy = False
                if not self._failing:
                    log.exception("%s: pass failed; retrying every %.1fs", self.name, self.interval)
                else:
                    log.debug("%s: pass failed again", self.name, exc_info=True)
                self._failing = True
            if busy or self.stopping.is_set():
                continue
            self.wake.wait(self.interval)
            self.wake.clear()
        log.info("%s stopped", self.name)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        self.wake.set()
        if self.thread.is_alive():
            self.thread.join(timeout)
            if self.thread.is_alive():
                log.warning("%s did not stop within %.0fs (it finishes its current row)", self.name, timeout)


class GatewayService:
    """SMTP gateway + worker + delivery. ``smtp``/``worker``/``delivery`` switch parts off (tests, or a
    deployment running several workers without a listener)."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        *,
        clock: Callable[[], datetime] = _utcnow,
        resolver: Any = None,
        smtp: bool = True,
        worker: bool = True,
        delivery: bool = True,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.clock = clock
        self.resolver = resolver
        self.dmarc = DmarcChecker.from_settings(settings, resolver=resolver) if settings.dmarc.enabled else None
        self._run_smtp, self._run_worker, self._run_delivery = smtp, worker, delivery
        self.controller: GatewayController | None = None
        self._worker_loop: _Loop | None = None
        self._delivery_loop: _Loop | None = None
        self._started = False
        self.gate = WriteGate()

    @property
    def smtp_port(self) -> int:
        if self.controller is None:
            raise RuntimeError("the SMTP listener is not running")
        return int(self.controller.port)

    @property
    def smtp_host(self) -> str:
        return str(self.settings.smtp.host)

    def wake_worker(self, _row_ids: object = None) -> None:
        if self._worker_loop is not None:
            self._worker_loop.wake.set()

    def wake_delivery(self) -> None:
        if self._delivery_loop is not None:
            self._delivery_loop.wake.set()

    def _worker_step(self) -> bool:
        worker_id = worker_identity("worker")
        processed = process_pending(
            self.settings, self.factory, now=self.clock(), resolver=self.resolver, worker_id=worker_id,
            gate=self.gate.background, yield_to=self.gate.spool_waiting, limit=WORKER_PASS_ROWS,
        )
        if processed:
            self.wake_delivery()
            if processed < WORKER_PASS_ROWS and self._worker_loop is not None:
                # The spool is empty: let the next posts gather for a moment (see WORKER_GATHER_SECONDS).
                self._worker_loop.stopping.wait(WORKER_GATHER_SECONDS)
        return processed > 0

    def _delivery_step(self) -> bool:
        stats = deliver_pending(
            self.settings, self.factory, now=self.clock(), dmarc=self.dmarc, resolver=self.resolver,
            worker_id=worker_identity("delivery"), gate=self.gate.background,
        )
        # Busy only when something went out: rows rescheduled for later must not make the loop spin.
        return stats.sent > 0 or stats.failed > 0

    def start(self) -> None:
        if self._started:
            raise RuntimeError("GatewayService already started")
        interval = float(self.settings.worker.poll_interval)
        if self._run_worker:
            self._worker_loop = _Loop("passerelle-worker", self._worker_step, interval)
            self._worker_loop.start()
        if self._run_delivery:
            self._delivery_loop = _Loop("passerelle-delivery", self._delivery_step, interval)
            self._delivery_loop.start()
        if self._run_smtp:
            self.controller = build_controller(
                self.settings, self.factory, clock=self.clock, on_spooled=self.wake_worker, gate=self.gate
            )
            try:
                self.controller.start()
            except BaseException:
                self.controller = None
                self.stop()
                raise
            log.info("SMTP gateway listening on %s:%s", self.settings.smtp.host, self.controller.port)
        self._started = True

    def stop(self, timeout: float = 30.0) -> None:
        # Stop accepting first: after this no new 250 can be given, so nothing is left half-accepted.
        if self.controller is not None:
            try:
                self.controller.stop()
            finally:
                self.controller = None
        for loop in (self._worker_loop, self._delivery_loop):
            if loop is not None:
                loop.stop(timeout)
        self._worker_loop = self._delivery_loop = None
        self._started = False

    def __enter__(self) -> GatewayService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["GatewayService"]
